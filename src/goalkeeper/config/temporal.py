"""How goalkeeper connects to a fleet's Temporal server: its address and namespace, TLS (a client certificate
and key for mTLS, the CA the server's certificate is checked against, the name it must carry) and an API key
read from an environment variable (Temporal Cloud).

The flags of `gk worker`, `gk submit` and `gk batch` win over the user's `[temporal]` table key by key; a face
given no flags (`gk goal pause`, the dashboard, the child that wakes a workflow) reads the table alone. Only
the user's file is read, never a project's: a repository must not choose where a fleet's credentials go (as
for `store_url`). The key is read from its variable when connecting and kept in memory only: never in a flag,
the config, the store, an event or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from goalkeeper.errors import ConfigError
from goalkeeper.store.home import goalkeeper_home

_FLAGS = {"tls": "--tls", "cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-ca",
          "server_name": "--tls-server-name", "api_key_env": "--api-key-env"}
"""Each setting's flag, as errors name it."""

_KEYS = {"tls": "tls", "cert": "tls_cert", "key": "tls_key", "ca": "tls_ca", "server_name": "tls_server_name",
         "api_key_env": "api_key_env"}
"""Each setting's key in the `[temporal]` table."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TlsFlags:
    """The connection flags as given on a command line; None: not given (the user's `[temporal]` decides)."""

    tls: bool | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    server_name: str | None = None
    api_key_env: str | None = None

    def given(self) -> list[str]:
        """The flags given, by name."""
        return [_FLAGS[item.name] for item in fields(self) if getattr(self, item.name) not in (None, False)]


@dataclass(frozen=True)
class Credentials:
    """What a connection presents, read from the files and the variable just before connecting."""

    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)
    ca: bytes | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TemporalConnection:
    """Where the fleet's Temporal server is and how to connect to it; no secret, only where each one lies."""

    address: str
    namespace: str = "default"
    tls: bool = False
    """Connect over TLS: asked for, or implied by a certificate, a CA, a server name or an API key."""
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    server_name: str | None = None
    api_key_env: str | None = None
    named: Mapping[str, str] = field(default_factory=dict, compare=False)
    """How the person gave each setting that came from the config file (else its flag), for errors."""

    def name_of(self, setting: str) -> str:
        """The flag or config key that set `setting`, as an error names it."""
        return self.named.get(setting, _FLAGS[setting])

    def secret_files(self) -> tuple[Path, ...]:
        """The certificate, key and CA files: no goal's command may read them."""
        return tuple(path for path in (self.cert, self.key, self.ca) if path is not None)

    def credentials(self) -> Credentials:
        """The files' contents and the API key; one ConfigError naming the flag or key and the fix if one is
        missing, unreadable or empty, or a certificate comes without its key."""
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise ConfigError(f"{self.name_of(given)} is given without {_FLAGS[missing]}",
                              "mTLS needs both the client certificate and its private key: give both, or neither")
        return Credentials(self._pem("cert"), self._pem("key"), self._pem("ca"), self._api_key())

    def _pem(self, setting: str) -> bytes | None:
        path: Path | None = getattr(self, setting)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"{self.name_of(setting)} {path}: {error.strerror or error}",
                              "give the path of a readable PEM file (the user running goalkeeper must be "
                              "able to read it)") from None
        if b"-----BEGIN " not in data:
            raise ConfigError(f"{self.name_of(setting)} {path} is not a PEM file",
                              "give a PEM file (text beginning -----BEGIN …); convert a DER one with openssl")
        return data

    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env, "").strip()
        if not value:
            raise ConfigError(f"{self.name_of('api_key_env')} {self.api_key_env}: the variable is unset or empty",
                              f"export {self.api_key_env} with the Temporal API key in the environment of this "
                              "command (its name goes in the flag or config, never the key)")
        return value


def connection(address: str, namespace: str = "default", flags: TlsFlags | None = None,
               config: Path | None = None) -> TemporalConnection:
    """The connection to `address`: `flags` laid over the user's `[temporal]` table (`config`, by default
    $GOALKEEPER_HOME/config.toml), paths made absolute (a flag's from the current directory, the table's
    from its file's folder)."""
    config = config or user_config()
    table = user_table(config)
    chosen: dict[str, Any] = {}
    named: dict[str, str] = {}
    for setting, key in _KEYS.items():
        given = getattr(flags, setting) if flags is not None else None
        if given not in (None, False):
            chosen[setting] = given
        elif table.get(key) is not None:
            chosen[setting] = table[key]
            named[setting] = f"[temporal] {key} in {config}"
    env = chosen.get("api_key_env")
    if env is not None and not _ENV_NAME.fullmatch(env):
        raise ConfigError(f"{named.get('api_key_env', '--api-key-env')} {env!r} is not an environment variable's "
                          "name", "give the variable's NAME (e.g. TEMPORAL_API_KEY), never the key itself")
    paths = {setting: absolute(chosen[setting], config.parent if setting in named else Path.cwd())
             for setting in ("cert", "key", "ca") if setting in chosen}
    implied = bool(paths) or any(chosen.get(setting) for setting in ("tls", "server_name", "api_key_env"))
    return TemporalConnection(address, namespace, implied, paths.get("cert"), paths.get("key"), paths.get("ca"),
                              chosen.get("server_name"), env, named)


def user_config() -> Path:
    """$GOALKEEPER_HOME/config.toml (by default ~/.goalkeeper/config.toml)."""
    return goalkeeper_home() / "config.toml"


def user_table(config: Path) -> dict[str, Any]:
    """The user's `[temporal]` table, checked; {} without one. The file is parsed only when it names the
    table, so a command that connects starts no slower for everyone else."""
    try:
        if b"temporal" not in config.read_bytes():
            return {}
    except OSError:
        return {}  # no user config (an unreadable one is reported by the commands that read it)
    from goalkeeper.config.load import read_config_file

    found = read_config_file(config).get("temporal")
    return dict(found) if isinstance(found, dict) else {}


def table_files(table: Mapping[str, Any], config: Path) -> tuple[Path, ...]:
    """The certificate, key and CA files a `[temporal]` table (of the file `config`) names, absolute."""
    return tuple(absolute(str(table[key]), config.parent) for key in ("tls_cert", "tls_key", "tls_ca")
                 if table.get(key))


def absolute(text: str, base: Path) -> Path:
    """`text` as a path, `~` expanded, relative to `base` unless absolute."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path).absolute()
