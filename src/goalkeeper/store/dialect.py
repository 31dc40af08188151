"""What differs between the store's two SQL backends, SQLite and PostgreSQL, kept to a few fragments.

The store's statements are written once, in the SQL both speak: `?` placeholders (the PostgreSQL connection
turns them into `%s`), `INSERT ... ON CONFLICT`, and a `rowid` to order rows made in the same instant (SQLite's
own; a PostgreSQL table has an identity column of that name). What is left is here: SQLite's planner hints,
which PostgreSQL has no use for, and reading a key of a JSON text column; and each connection's `insert`, which
returns the new row's key (SQLite's `lastrowid`: a `RETURNING` costs its hot path about 7 µs an event).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

URL_SCHEMES = ("postgresql://", "postgres://")
"""How a store_url that names a PostgreSQL store begins."""

_PASSWORD_IN_ADDRESS = re.compile(r"(?<=://)([^/?#@:]*):[^/?#]*@")
_PASSWORD_PARAMETER = re.compile(r"(?i)\b(password=)[^&\s]*")


@dataclass(frozen=True)
class Dialect:
    """The fragments of SQL one backend spells its own way."""

    name: str
    hints: bool
    """Whether the planner takes hints (SQLite's `INDEXED BY` and a `+` that keeps a column's index out)."""

    def indexed_by(self, index: str) -> str:
        """` INDEXED BY index` where the planner takes it, else nothing."""
        return f" INDEXED BY {index}" if self.hints else ""

    def unindexed(self, column: str) -> str:
        """`column`, kept out of the plan's index choice where the planner takes the hint."""
        return f"+{column}" if self.hints else column

    def json_text(self, column: str, key: str) -> str:
        """The text of the top-level `key` of the JSON text in `column`."""
        return f"json_extract({column}, '$.{key}')" if self.hints else f"({column}::jsonb ->> '{key}')"


SQLITE = Dialect("sqlite", hints=True)
POSTGRES = Dialect("postgresql", hints=False)


def is_postgres_url(location: object) -> bool:
    """Whether `location` (a store_url, or a store file's path) names a PostgreSQL store."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def shown_url(url: str) -> str:
    """`url` with its password (in the address or a `password=` parameter) replaced by `***`."""
    return _PASSWORD_PARAMETER.sub(r"\1***", _PASSWORD_IN_ADDRESS.sub(r"\1:***@", url))


class Row(Protocol):
    """A result row, read by column name or position (sqlite3.Row, and the PostgreSQL connection's rows)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Connection(Protocol):
    """One backend's connection as the store's statements use it, inside a `Database.write` or `read` block."""

    dialect: Dialect

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def insert(self, sql: str, parameters: Sequence[Any], key: str) -> int:
        """Run the INSERT `sql` and return the `key` column (an integer primary key) of the row it made."""
        ...

    def now(self) -> float:
        """The time, in seconds since the epoch, by the one clock every holder of a lease shares (the
        server's, for a database on a server; this machine's, for a file on it)."""
        ...


class Backend(Protocol):
    """One store's database, whichever the backend: short transactions, reads, and its own checks."""

    dialect: Dialect

    def write(self, durable: bool = False) -> AbstractContextManager[Connection]:
        """One transaction that holds the store's writer lock: committed when the block ends, else rolled back."""
        ...

    def read(self) -> AbstractContextManager[Connection]:
        """The connection for reads; each statement sees what was committed when it began."""
        ...

    def check_integrity(self) -> list[str]:
        """What the backend's own check of the store found wrong; [] when it is intact."""
        ...

    def schema_version(self) -> int:
        """How many of the store's migrations have been applied."""
        ...

    def close(self) -> None: ...
