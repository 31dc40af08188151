"""Request bodies that grow by what is new: each message is encoded to JSON once, and a later request reuses
the encoding of every leading message it shares with the one before.

A goal's history is append-only between compactions (DESIGN §6), so each request is the previous one plus a
few messages: a step encodes only those, and the body is the cached pieces joined. Messages are matched by
identity (the conversation hands out the same `Message` objects until a trim or compaction replaces them),
so a replaced message and everything after it are encoded afresh. Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
Item = TypeVar("Item")


def compact_json(value: object) -> bytes:
    """JSON as the openai SDK sends it (UTF-8, no spaces); a request body built of these reads the same."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def ascii_json(value: object) -> bytes:
    """JSON with non-ASCII escaped (no spaces): a stray surrogate in tool output cannot break the body."""
    return json.dumps(value, separators=(",", ":")).encode()


def json_array(items: Sequence[bytes]) -> bytes:
    """A JSON array of already-encoded items."""
    return b"[" + b",".join(items) + b"]"


def json_object(fields: Sequence[tuple[str, bytes]]) -> bytes:
    """A JSON object of already-encoded values, in the order given (keys are plain ASCII names)."""
    return b"{" + b",".join(b'"' + key.encode() + b'":' + value for key, value in fields) + b"}"


class Encoded(Generic[Item, T]):
    """The encoding of each item of the previous request, reused for the leading items that are the same
    objects; only the rest are encoded. It keeps one request's worth: the items and their encodings."""

    def __init__(self, encode: Callable[[Item], T]) -> None:
        self._encode = encode
        self._items: list[Item] = []
        self._encoded: list[T] = []

    def of(self, items: Sequence[Item]) -> list[T]:
        """The encoding of each of `items`, in order (the returned list is the cache's: do not change it)."""
        same, shared = 0, min(len(items), len(self._items))
        while same < shared and items[same] is self._items[same]:
            same += 1
        del self._items[same:], self._encoded[same:]
        for item in items[same:]:
            self._items.append(item)
            self._encoded.append(self._encode(item))
        return self._encoded
