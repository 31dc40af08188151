"""Where a command acts: the workspace `--cwd` names (its git top-level), and where the store is.

Every read command asks both before anything else, so this module needs nothing a glance at the store would not
(no store, no git process for a plain repository): cli/glance.py and goals/service.py share it.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from goalkeeper.errors import ConfigError, WorkspaceError
from goalkeeper.store.dialect import URL_SCHEMES, shown_url
from goalkeeper.store.home import goalkeeper_home


def busy_timeout_s() -> float:
    """How long to wait for the store's lock: $GOALKEEPER_BUSY_TIMEOUT_S seconds (default 10)."""
    text = os.environ.get("GOALKEEPER_BUSY_TIMEOUT_S", "10")
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # `not >=` also refuses NaN
        raise ConfigError(f"GOALKEEPER_BUSY_TIMEOUT_S={text!r} is not a number of seconds",
                          "set it to a number such as 10, or unset it")
    return seconds


def store_url() -> str | None:
    """$GOALKEEPER_STORE_URL, else `store_url` in $GOALKEEPER_HOME/config.toml; None: the SQLite file.

    Never a project's config.toml: a repository must not choose where its goals are recorded. The file is
    parsed only when it mentions the key, so the read commands start no slower for everyone else."""
    if url := os.environ.get("GOALKEEPER_STORE_URL"):
        if not url.startswith(URL_SCHEMES):
            raise ConfigError(f"GOALKEEPER_STORE_URL={shown_url(url)!r} is not a PostgreSQL URL",
                              "set it to postgresql://USER@HOST:PORT/DATABASE, or unset it to use the store "
                              "file $GOALKEEPER_HOME/state.db")
        return url
    config = goalkeeper_home() / "config.toml"
    try:
        if b"store_url" not in config.read_bytes():
            return None
    except OSError:
        return None  # no user config (an unreadable one is reported by the commands that read it)
    from goalkeeper.config.load import read_config_file

    found = read_config_file(config).get("store_url")
    return str(found) if found else None


def workspace_of(cwd: Path) -> Path:
    """The workspace for `--cwd`: its git top-level when inside a repository."""
    path = cwd.expanduser()
    if not path.exists():
        raise WorkspaceError(f"workspace does not exist: {path}", "pass --cwd with an existing directory")
    if not path.is_dir():
        raise WorkspaceError(f"workspace is not a directory: {path}", "pass --cwd with a directory, not a file")
    here = path.resolve()
    found = _top_or_here(here)
    if found is not None:
        return found
    from goalkeeper.workspace.git import toplevel

    try:
        return toplevel(here)
    except WorkspaceError:
        return here  # not a repository: the preflight says so when a goal is set


def _top_or_here(here: Path) -> Path | None:
    """What `git rev-parse --show-toplevel` finds from the real path `here`, read from the file system: the
    first folder up with a `.git` (a folder, or a `gitdir:` file) that is a plain repository we own, or `here`
    when no folder up has one (not a repository). None for anything else (a bare repository, inside a `.git`,
    another file system, another owner, a config that moves the work tree): git itself decides those. Every
    read command asks, and two git processes cost more than the rest of `gk status`. run_git drops GIT_DIR,
    GIT_WORK_TREE and the ceiling variables, so git's answer never depends on them either."""
    try:
        device = here.stat().st_dev
        for folder in (here, *here.parents):
            if os.path.lexists(folder / ".git"):
                return folder if _plain_git_dir(folder / ".git") else None
            if _is_git_dir(folder) or folder.stat().st_dev != device:
                return None
    except OSError:  # unreadable: git says what is wrong
        return None
    return here


def _plain_git_dir(dot_git: Path) -> bool:
    """Whether `dot_git` (a repository's `.git` folder, or a worktree's `gitdir:` file) is one git uses as it
    is: ours, with HEAD, objects and refs, and no config that makes it bare, moves the work tree or includes."""
    git_dir = dot_git
    if dot_git.is_file() and not dot_git.is_symlink():
        pointer = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if not pointer.startswith("gitdir: "):
            return False
        git_dir = dot_git.parent / pointer.removeprefix("gitdir: ")
    elif not dot_git.is_dir() or dot_git.is_symlink():
        return False
    common = git_dir / (git_dir / "commondir").read_text().strip() if (git_dir / "commondir").is_file() else git_dir
    configs = [common / "config", git_dir / "config.worktree"]
    return (_is_git_dir(git_dir, common) and all(folder.stat().st_uid == os.geteuid()
                                                 for folder in (dot_git.parent, dot_git, git_dir, common))
            and not any(_MOVES_WORK_TREE.search(config.read_text(errors="replace"))
                        for config in configs if config.is_file()))


def _is_git_dir(folder: Path, common: Path | None = None) -> bool:
    """git's own test of a repository folder: HEAD, and objects and refs (in the common folder of a worktree)."""
    common = common or folder
    return (folder / "HEAD").is_file() and (common / "objects").is_dir() and (common / "refs").is_dir()


#: Config that makes git's answer differ from "the folder holding .git": core.bare, core.worktree, includes.
_MOVES_WORK_TREE = re.compile(r"^\s*(bare\b(?!\s*=\s*(false|no|off|0)\s*$)|worktree\s*=|\[\s*include)",
                              re.IGNORECASE | re.MULTILINE)
