"""The store's files and the server token: private whatever the umask, never reached through a link, and one
clear error (exit 4, a hint, no traceback) for an empty, read-only or immutable store and for a full disk.

Real files, real SQLite, the real `gk` in subprocesses. A read-only file system and a full disk are tiny
tmpfs mounts (skipped where mounting is denied); a read-only file is tested as an unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalkeeper.errors import ConfigError, StoreError
from goalkeeper.server import ensure_token, read_token
from goalkeeper.store import Store
from scenario import TESTS, gk, sample_repo

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def assert_clear_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "fix:" in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


# ---------------------------------------------------------------- modes


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_store_folder_and_files_are_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    home = tmp_path / "new-home"
    with umask(mask):
        made = subprocess.run([sys.executable, "-m", "goalkeeper", "threads"], capture_output=True, text=True,
                              env={**os.environ, "GOALKEEPER_HOME": str(home)}, timeout=60)
        assert made.returncode == 0, made.stderr
        assert mode(home) == 0o700 and mode(home / "state.db") == 0o600
        other = tmp_path / "elsewhere" / "store.db"
        with Store(other) as store:
            store.create_thread(tmp_path)
            assert mode(other.parent) == 0o700
            for name in ("store.db", "store.db-wal", "store.db-shm"):
                assert mode(other.parent / name) == 0o600, name
        assert not list(other.parent.glob(".*.new*"))  # the temporary build is gone


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_the_server_token_and_its_folder_are_private_whatever_the_umask(tmp_path: Path, mask: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "token-home"
    monkeypatch.setenv("GOALKEEPER_HOME", str(home))
    with umask(mask):
        token, created = ensure_token()
    assert created and mode(home) == 0o700 and mode(home / "server-token") == 0o600
    assert read_token() == token


def test_an_old_store_open_to_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path):
        pass
    path.chmod(0o644)  # as goalkeeper left it before its files were private
    with Store(path):
        assert mode(path) == 0o600


# ---------------------------------------------------------------- links


def test_a_symlinked_token_file_is_refused(goalkeeper_home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "not-a-token"
    secret.write_text("someone else's secret\n")
    (goalkeeper_home / "server-token").symlink_to(secret)
    with pytest.raises(ConfigError, match="symbolic link"):
        read_token()
    with pytest.raises(ConfigError, match="symbolic link"):
        ensure_token()
    shown = gk("serve", "--show-token", home=goalkeeper_home)
    assert_clear_error(shown, "symbolic link")
    assert "someone else's secret" not in shown.stdout + shown.stderr
    (goalkeeper_home / "server-token").unlink()
    (goalkeeper_home / "server-token").symlink_to(tmp_path / "dangling")
    with pytest.raises(ConfigError, match="symbolic link"):
        ensure_token()
    assert not (tmp_path / "dangling").exists()  # a planted link is not followed to create a file


@pytest.mark.parametrize("name", ["state.db", "state.db-wal", "state.db-shm"])
def test_a_symlinked_store_file_is_refused(goalkeeper_home: Path, tmp_path: Path, name: str) -> None:
    target = tmp_path / "target.db"
    with Store(target) as store:
        store.create_thread(tmp_path)
    before = target.read_bytes()
    if name == "state.db":
        (goalkeeper_home / name).symlink_to(target)
    else:
        shutil.copy(target, goalkeeper_home / "state.db")
        (goalkeeper_home / name).symlink_to(tmp_path / f"planted{name[-4:]}")
    assert_clear_error(gk("threads", home=goalkeeper_home), "symbolic link")
    assert target.read_bytes() == before
    with pytest.raises(StoreError, match="symbolic link"):
        Store(goalkeeper_home / "state.db")


# ---------------------------------------------------------------- empty, read-only, immutable, full


def test_a_zero_byte_store_is_refused_and_left_as_it_is(goalkeeper_home: Path) -> None:
    (goalkeeper_home / "state.db").touch()
    assert_clear_error(gk("threads", home=goalkeeper_home), "empty (0 bytes)", "rm ")
    assert (goalkeeper_home / "state.db").stat().st_size == 0


@pytest.mark.parametrize("read_only", ["file", "folder"])
def test_a_read_only_store_or_folder_is_a_clear_error(read_only: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user")
    home = Path(tempfile.mkdtemp(prefix="gk-ro-", dir="/tmp"))
    try:
        home.chmod(0o755)
        with Store(home / "state.db") as store:
            store.create_thread(home)
        for file in home.iterdir():
            os.chown(file, NOBODY, NOBODY)
        os.chown(home, NOBODY, NOBODY)
        if read_only == "file":
            (home / "state.db").chmod(0o444)
        else:
            home.chmod(0o555)
        # Everything is imported as root (the interpreter lives under /root), then the command runs as nobody.
        as_nobody = ("import os, sys; import goalkeeper.cli.app, goalkeeper.cli.root as cli; "
                     "os.setgid(65534); os.setuid(65534); sys.argv = ['gk', 'threads']; cli.main()")
        done = subprocess.run([sys.executable, "-c", as_nobody], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "GOALKEEPER_HOME": str(home)})
        assert_clear_error(done, "read-only", "chmod")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_store_on_a_read_only_file_system_is_a_clear_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as home:
        assert gk("threads", home=home).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        assert_clear_error(gk("threads", home=home), "read-only")
        assert_clear_error(gk("threads", home=home / "not-made-yet"), "Read-only file system")


def test_an_immutable_store_is_a_clear_error(goalkeeper_home: Path) -> None:
    assert gk("threads", home=goalkeeper_home).returncode == 0
    store = goalkeeper_home / "state.db"
    if subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        assert_clear_error(gk("threads", home=goalkeeper_home), "read-only", "chattr -i")
    finally:
        subprocess.run(["chattr", "-i", str(store)], check=False)


def _fill(folder: Path) -> None:
    with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with tmpfs(tmp_path / "full", "512k") as home:
        assert gk("threads", home=home).returncode == 0
        _fill(home)
        done = gk("goal", "Fix the discount bug", "--check", f"tests={TESTS}", "--force", "--cwd", str(workspace),
                  home=home)
        assert_clear_error(done, "full", "df -h")
        (home / "filler").unlink()
        assert gk("threads", home=home).returncode == 0  # space freed: the store works again, intact
        _fill(home)
        (home / "state.db").unlink()
        for name in ("state.db-wal", "state.db-shm"):
            (home / name).unlink(missing_ok=True)
        assert_clear_error(gk("threads", home=home), "full")  # no room for a new store either
        assert not (home / "state.db").exists()
