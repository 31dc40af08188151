"""The goal's git workspace: preflight, the goal branch, and the git plumbing that checkpoints build on.

It never pushes, and it never writes to a branch other than the goal's own (the one it creates).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from goalkeeper.errors import WorkspaceError
from goalkeeper.store.locks import process_is_alive

GIT_TIMEOUT_S = 120.0
"""Upper bound on one git command; a hung hook or a stale lock becomes an error instead of a stall."""

HARNESS_NAME = "goalkeeper"
HARNESS_EMAIL = "goalkeeper@localhost"
SNAPSHOT_SUBJECT = "goalkeeper: snapshot of uncommitted changes"
DIRTY_HINT = "commit or stash them, or pass --allow-dirty to snapshot them onto the goal branch"
LISTED_PATHS = 10
"""How many paths an error message lists before it says "and N more"."""

#: Config every harness git runs with, at command-line scope (it beats system, global, repository and
#: included files): no hook, fsmonitor, pager, editor, prompt, signing, transport or auto-gc can run a
#: program the repository names. Filter, diff and merge drivers are blanked per name (`_driver_overrides`).
SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),  # every hook kind, post-index-change and reference-transaction too
    ("core.fsmonitor", "false"),
    ("core.useBuiltinFSMonitor", "false"),
    ("core.pager", "cat"),  # git runs no pager for "cat"
    ("core.editor", ":"),  # nor an editor for ":"
    ("sequence.editor", ":"),
    ("core.askPass", ""),
    ("core.sshCommand", ""),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),  # an empty value resets the list
    ("protocol.allow", "never"),  # goalkeeper never fetches or pushes: no transport at all
    ("diff.external", ""),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("submodule.recurse", "false"),
)

#: The program-running keys of a named driver: filter.<x>.clean/smudge/process, diff.<x>.textconv/command,
#: merge.<x>.driver.
_DRIVER_KEY = re.compile(r"^(filter|diff|merge)\.(.+)\.(clean|smudge|process|textconv|command|driver)$",
                         re.IGNORECASE | re.DOTALL)

#: Set for every harness git; inherited GIT_* variables are dropped first (GIT_DIR, GIT_EXEC_PATH,
#: GIT_EXTERNAL_DIFF, GIT_SSH_COMMAND, GIT_CONFIG_PARAMETERS, GIT_INDEX_FILE, ...).
_FIXED_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",  # a replace ref could make a commit show another tree
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",  # empty: no askpass program, and SSH_ASKPASS is not consulted
    "GIT_PAGER": "cat",
    "GIT_EDITOR": ":",
}

#: Inherited GIT_* variables that only name the user or the user's own global config file.
_KEPT_GIT_ENV = frozenset({"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
                           "GIT_CONFIG_GLOBAL"})

#: Other variables git would run a program from.
_DROPPED_ENV = frozenset({"SSH_ASKPASS", "PAGER", "EDITOR", "VISUAL", "GIT_PAGER", "GIT_EDITOR"})

#: Subcommands that can render a diff, so an external diff or a textconv driver could run.
_DIFFING = frozenset({"diff", "log", "show"})


@dataclass(frozen=True)
class Preflight:
    """What preflight found: the repository and the commit a goal would start from."""

    top: Path
    """The git top-level directory; every path below is relative to it."""
    head_branch: str | None
    """The branch HEAD is on, or None for a detached HEAD."""
    head_commit: str
    dirty: list[str]
    """Uncommitted paths (staged, unstaged, untracked and not ignored); empty for a clean tree."""


@dataclass(frozen=True)
class GoalBranch:
    """The goal's own branch; the store keeps these three values so a resumed goal finds it again."""

    name: str
    """`goal/<8 hex of the goal id>-<slug of the outcome>`."""
    base_commit: str
    """The HEAD the goal branch was created from."""
    snapshot_commit: str | None = None
    """The commit holding the user's uncommitted changes (--allow-dirty), or None."""


@dataclass(frozen=True)
class Change:
    """One uncommitted path, as `git status --porcelain` reports it."""

    status: str
    """The two-letter porcelain code: `??` untracked, ` M` modified, `D ` deleted and staged, ..."""
    path: str
    """Relative to the top-level, `/`-separated; a nested repository ends with `/`."""


def git(top: Path, *args: str, stdin: str | None = None, errors: str = "surrogateescape",
        env: Mapping[str, str] | None = None) -> str:
    """Run `git args` in `top` and return its stdout; any failure is a WorkspaceError that says which."""
    done = probe(top, *args, stdin=stdin, errors=errors, env=env)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise WorkspaceError(f"`git {' '.join(args)}` failed in {top}: {detail}",
                             hint="fix the repository state git reports, then try again")
    return done.stdout


def probe(top: Path, *args: str, stdin: str | None = None, errors: str = "surrogateescape",
          env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `git args` in `top` and return the finished process, whatever its exit code."""
    # surrogateescape: paths that are not UTF-8 survive the round trip back to git and the file system
    done = run_git(top, *args, stdin=None if stdin is None else stdin.encode("utf-8", errors), env=env)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", errors),
                                       done.stderr.decode("utf-8", errors))


def run_git(top: Path, *args: str, stdin: bytes | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The one way goalkeeper runs git: hardened (SAFE_CONFIG, blanked drivers, a clean environment, git found
    outside the workspace), bytes in and out, any exit code.

    `env` adds variables after the hardening (GIT_INDEX_FILE for a scratch index); nothing else may.
    """
    program, environment = _hardened_base(top)
    environment.update(env or {})
    try:
        config = list(_repository_config(program, top, environment).overrides) + list(SAFE_CONFIG)
        environment.update(_config_environment(config))
        return subprocess.run([program, *_with_diff_guards(args)], cwd=top, input=stdin, capture_output=True,
                              env=environment, timeout=GIT_TIMEOUT_S, check=False)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise WorkspaceError(f"git could not be run in {top}: {err}", hint="install git, or pass --cwd to an "
                             "existing repository") from err
    except subprocess.TimeoutExpired as err:
        raise WorkspaceError(f"`git {args[0]}` took longer than {GIT_TIMEOUT_S:.0f}s in {top}",
                             hint="look for a stale .git/index.lock or a hook that hangs") from err


def _hardened_base(top: Path) -> tuple[str, dict[str, str]]:
    """(git's path, its environment): inherited GIT_* dropped, the workspace kept off PATH, no prompts."""
    path = safe_path(top, os.environ.get("PATH", os.defpath))
    program = _GIT_PROGRAMS.get(path)
    if program is None or not os.access(program, os.X_OK):
        program = shutil.which("git", path=path)
        if program is None:
            raise WorkspaceError("git is not installed (or not on PATH)", hint="install git")
        _GIT_PROGRAMS[path] = program
    environment = _inherited_environment()
    environment.update(_FIXED_ENV)
    environment["PATH"] = path
    return program, environment


def _inherited_environment() -> dict[str, str]:
    """The process's environment without the GIT_* variables (but _KEPT_GIT_ENV) and _DROPPED_ENV: filtered again
    only when the environment changed. Every git call asks, and decoding ~200 variables each time cost more than
    a batch goal's whole config cache."""
    global _INHERITED
    raw = getattr(os.environ, "_data", None)  # the bytes behind os.environ: compared at C speed, nothing decoded
    known = _INHERITED
    if raw is not None and known is not None and known[0] == raw:
        return dict(known[1])
    environment = {name: value for name, value in os.environ.items()
                   if name.upper() not in _DROPPED_ENV
                   and (not name.upper().startswith("GIT_") or name.upper() in _KEPT_GIT_ENV)}
    if isinstance(raw, dict):
        _INHERITED = (dict(raw), environment)
    return dict(environment)


#: Safe PATH → the git found on it, looked up again when it is no longer there. Only a folder outside every
#: workspace is on a safe PATH, and no goal's command writes those.
_GIT_PROGRAMS: dict[str, str] = {}

#: (a copy of os.environ's bytes, the environment filtered from them).
_INHERITED: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def safe_path(top: Path, path: str) -> str:
    """`path` without relative entries or entries inside `top`: a program the model planted in the
    workspace (`.venv/bin/git`, `bin/git-lfs`) is never the one the harness runs."""
    root = _real_top(top)
    kept = []
    for entry in path.split(os.pathsep):
        real = _real_entry(entry) if os.path.isabs(entry) else None
        if real is not None and real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            kept.append(entry)
    return os.pathsep.join(kept)


def _real_top(top: Path) -> str:
    """The workspace's real path, resolved again when the folder itself is another (its inode changed) or is
    a link now. Only the folders above it could change it otherwise, and no goal's command can write those."""
    name = str(top)
    try:
        info = os.lstat(name)
    except OSError:
        return os.path.realpath(name)
    stamp = (info.st_dev, info.st_ino, info.st_mode)
    known = _REAL_TOPS.get(name)
    if known is not None and known[0] == stamp and not stat.S_ISLNK(info.st_mode):
        return known[1]
    real = os.path.realpath(name)
    _REAL_TOPS[name] = (stamp, real)
    return real


#: Workspace → (its lstat's device, inode and mode when resolved, its real path).
_REAL_TOPS: dict[str, tuple[tuple[int, int, int], str]] = {}


def _real_entry(entry: str) -> str:
    """A PATH entry's real path, resolved again whenever the entry's own stat changes (a link made or moved
    there); every git call asks, and resolving each entry's links costs more than the stat."""
    try:
        info = os.lstat(entry)
        stamp: _Stat = (info.st_ino, info.st_mode, info.st_mtime_ns, info.st_ctime_ns)
    except OSError:
        stamp = None
    known = _REAL_ENTRIES.get(entry)
    if known is not None and known[0] == stamp and stamp is not None and not stat.S_ISLNK(stamp[1]):
        return known[1]
    real = os.path.realpath(entry)
    _REAL_ENTRIES[entry] = (stamp, real)
    return real


#: PATH entry → (its lstat when resolved, its real path): a plain folder's real path is kept while it stays one.
_REAL_ENTRIES: dict[str, tuple[_Stat, str]] = {}


_Stat = tuple[int, int, int, int] | None

_Key = tuple[tuple[str, bytes | None], ...]
"""(path, its bytes or None when it does not exist) for each file a repository's config depends on."""

@dataclass(frozen=True)
class _RepositoryConfig:
    """What the harness reads from a repository's config: the driver overrides and the identity keys set."""

    overrides: tuple[tuple[str, str], ...]
    identity: frozenset[str]
    """Which of user.name and user.email some config layer sets."""


#: (top-level, *the config files it may read) → (the content of every file its config was read from, what was
#: read). `git config --list` runs once per repository, not on every git call; any change to one of those
#: files (a model can write .git/config only under danger-full-access) reads it again. Keyed on content, not
#: on stat: a file written a moment ago (HEAD after the goal branch is made, a repository just made) is
#: cached as safely as an old one, and reading a few small files costs far less than starting git.
_CONFIG_CACHE: dict[tuple[str, ...], tuple[_Key, _RepositoryConfig]] = {}

#: A config file bigger than this (or not a regular file: a FIFO would block the read) is never cached.
_MAX_CONFIG_BYTES = 1 << 20

#: A file that only the read named (an include, the system file) and that changed this recently is not cached:
#: its content is taken after git read it, so a write in between could pair new content with an old read.
_RACY_S = 1.0


def _repository_config(program: str, top: Path, environment: Mapping[str, str]) -> _RepositoryConfig:
    """The repository's config facts, from the cache while no config file they were read from has changed."""
    watched, head = _watched_files(top, environment)
    cached = _CONFIG_CACHE.get((str(top), *watched)) if watched else None
    if cached is not None and _contents([path for path, _ in cached[0]]) == cached[0]:
        return cached[1]
    # Taken before the read: a write after it makes the key stale (read again next time), never the value.
    before = _contents(watched) if watched else None
    listed = subprocess.run([program, "config", "--list", "-z", "--includes", "--show-origin"], cwd=top,
                            capture_output=True, env={**environment, **_config_environment(list(SAFE_CONFIG))},
                            timeout=GIT_TIMEOUT_S, check=False)
    found, named, on_branch = _read_config_list(top, listed.stdout.decode("utf-8", "surrogateescape"))
    if before is not None:
        extra = [path for path in dict.fromkeys(named) if path not in watched]
        after = _contents(extra)
        if after is not None and not _recent(extra):
            # HEAD changes what git reads only through an `includeIf "onbranch:..."`: without one, a new
            # branch (every goal makes one) leaves the cached read good.
            kept = before if on_branch else tuple(entry for entry in before if entry[0] != head)
            _CONFIG_CACHE[(str(top), *watched)] = ((*kept, *after), found)
    return found


def _read_config_list(top: Path, text: str) -> tuple[_RepositoryConfig, list[str], bool]:
    """The driver overrides, the identity keys, the files named (origins and include paths) and whether an
    `includeIf "onbranch:..."` is among them, in the output of `git config --list -z --includes
    --show-origin` (origin NUL key LF value NUL ...). The include's key is listed whether or not its condition
    holds now.

    An override is an empty command for every filter, diff or merge driver any config layer names: a
    driver runs only when an attribute names it and config gives it a command, and the attributes are the
    model's to write (.gitattributes), so every configured command is blanked, whatever its name.
    """
    fields = text.split("\0")
    overrides: list[tuple[str, str]] = []
    identity: set[str] = set()
    files: list[str] = []
    on_branch = False
    for origin, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = entry.partition("\n")
        on_branch = on_branch or key.lower().startswith("includeif.onbranch:")
        source = os.path.join(top, origin.removeprefix("file:")) if origin.startswith("file:") else None
        if source is not None:
            files.append(source)
        if key.lower() in ("user.name", "user.email"):
            identity.add(key.lower())
        if source is not None and key.lower().startswith("include") and key.lower().endswith(".path"):
            # An include that does not exist yet is watched too: creating it changes the config.
            files.append(os.path.join(os.path.dirname(source), os.path.expanduser(value)))
        match = _DRIVER_KEY.match(key)
        if match is None:
            continue
        overrides.append((key, ""))
        if match.group(1).lower() == "filter":
            overrides.append((f"{key.rpartition('.')[0]}.required", "false"))
    return _RepositoryConfig(tuple(overrides), frozenset(identity)), files, on_branch


def _watched_files(top: Path, environment: Mapping[str, str]) -> tuple[list[str], str]:
    """Every file whose change can change what `git config --list` shows in `top`, besides those it names:
    the repository's HEAD (`includeIf onbranch:`), config and config.worktree, and the global files; for a
    linked worktree (a batch's goals run in them) also its `.git` file and its `commondir`, which say where
    those are. A bare repository (the baseline mirror) is its own git dir. Empty where `top/.git` is anything
    else (a link, a subdirectory's missing one): nothing is cached. Then the HEAD among them."""
    if not os.path.lexists(top / ".git") and (top / "HEAD").is_file() and (top / "objects").is_dir():
        dirs: tuple[str, str, list[str]] | None = (str(top), str(top), [])  # git, started there, finds it first
    else:
        dirs = _dirs_from_files(top)
    if dirs is None:
        return [], ""
    git_dir, common, pointers = dirs
    home = environment.get("HOME", "")
    xdg = environment.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    global_files = ([environment["GIT_CONFIG_GLOBAL"]] if "GIT_CONFIG_GLOBAL" in environment
                    else [os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config")])
    head = os.path.join(git_dir, "HEAD")
    return [*pointers, head, os.path.join(common, "config"), os.path.join(git_dir, "config.worktree"),
            *global_files], head


def _dirs_from_files(top: Path) -> tuple[str, str, list[str]] | None:
    """(git dir, common dir, the pointer files that named them) of `top`, read as git reads them: a `.git`
    folder, or a `.git` file `gitdir: PATH` (relative to the file's folder) whose folder may hold a `commondir`
    (relative to it). None for a link or anything unreadable: the caller then asks git, or caches nothing."""
    dot_git = top / ".git"
    try:
        if dot_git.is_symlink():
            return None
        if dot_git.is_dir():
            return str(dot_git), str(dot_git), []
        text = dot_git.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir: ") or text.count("\n") > 1:
        return None
    git_dir = os.path.normpath(os.path.join(top, text.removeprefix("gitdir: ").strip()))
    commondir = os.path.join(git_dir, "commondir")
    try:
        common = os.path.normpath(os.path.join(git_dir, Path(commondir).read_text(encoding="utf-8").strip()))
    except FileNotFoundError:
        common = git_dir
    except (OSError, UnicodeDecodeError):
        return None
    if os.path.islink(git_dir) or not os.path.isfile(os.path.join(git_dir, "HEAD")):
        return None
    return git_dir, common, [str(dot_git), commondir]


def _contents(paths: Sequence[str]) -> _Key | None:
    """(path, its bytes or None when absent) for each path; None when one cannot be a cache key (not a
    regular file, too big, unreadable)."""
    found: list[tuple[str, bytes | None]] = []
    for path in dict.fromkeys(paths):
        try:
            # Non-blocking: a FIFO planted as an include must not hang the open; fstat then refuses it.
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            found.append((path, None))
            continue
        except OSError:
            return None
        with os.fdopen(descriptor, "rb") as file:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_CONFIG_BYTES:
                return None
            found.append((path, file.read(_MAX_CONFIG_BYTES + 1)))
    return tuple(found)


def _recent(paths: Sequence[str]) -> bool:
    """Whether one of `paths` was written within _RACY_S of now (or its time is in the future)."""
    now = time.time_ns()
    for path in paths:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if now - max(info.st_mtime_ns, info.st_ctime_ns) < _RACY_S * 1e9:
                return True
    return False


def _config_environment(config: Sequence[tuple[str, str]]) -> dict[str, str]:
    """GIT_CONFIG_COUNT/KEY/VALUE: command-line scope (it beats every file), and no `=` parsing of names."""
    environment = {"GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config):
        environment[f"GIT_CONFIG_KEY_{index}"] = key
        environment[f"GIT_CONFIG_VALUE_{index}"] = value
    return environment


def _with_diff_guards(args: Sequence[str]) -> list[str]:
    """`args` with --no-ext-diff --no-textconv after a diff, log or show subcommand (they accept both)."""
    out = list(args)
    index = 0
    while index < len(out) and out[index].startswith("-"):
        index += 2 if out[index] in ("-c", "-C") else 1
    if index < len(out) and out[index] in _DIFFING:
        out[index + 1:index + 1] = ["--no-ext-diff", "--no-textconv"]
    return out


def toplevel(workspace: Path) -> Path:
    """The git top-level directory of `workspace`; a WorkspaceError when there is none."""
    if not workspace.is_dir():
        raise WorkspaceError(f"{workspace} is not a directory", hint="pass --cwd to an existing repository")
    known = _TOPLEVELS.get(str(workspace))
    if known is not None and _still_top(workspace, known):
        return known
    done = probe(workspace, "rev-parse", "--show-toplevel")
    if done.returncode != 0 or not done.stdout.strip():
        raise WorkspaceError(f"{workspace} is not a git repository",
                             hint="git init && git add -A && git commit -m init, or pass --cwd to a repository")
    top = Path(done.stdout.strip())
    _TOPLEVELS[str(workspace)] = top
    return top


#: Workspace → its top-level, as git found it once (checkpoints ask on every turn).
_TOPLEVELS: dict[str, Path] = {}


def remember_toplevel(top: Path) -> None:
    """`top` is a top level the harness just made (a worktree): `toplevel` finds it without asking git."""
    _TOPLEVELS[str(top)] = Path(os.path.realpath(top))


def _still_top(workspace: Path, top: Path) -> bool:
    """Whether git would still find `top` from `workspace`: its `.git` is there, and no `.git` appeared in a
    folder between them (git's discovery stops at the first)."""
    if not os.path.lexists(top / ".git"):
        return False
    here = Path(os.path.realpath(workspace))
    if here != top and top not in here.parents:
        return False
    return not any(os.path.lexists(folder / ".git") for folder in (here, *here.parents) if folder != top
                   and top in folder.parents)


def current_branch(workspace: Path) -> str | None:
    """The branch HEAD is on (`goal/…`, `main`), or None when HEAD is detached."""
    done = probe(toplevel(workspace), "symbolic-ref", "-q", "HEAD")
    ref = done.stdout.strip()
    return ref.removeprefix("refs/heads/") if done.returncode == 0 and ref else None


def head_commit(top: Path) -> str | None:
    """The commit HEAD points at, or None in a repository with no commits yet."""
    done = probe(top, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    return done.stdout.strip() if done.returncode == 0 else None


def branch_exists(top: Path, name: str) -> bool:
    """Whether the local branch `name` exists."""
    return probe(top, "rev-parse", "--verify", "-q", f"refs/heads/{name}").returncode == 0


def changes(top: Path) -> list[Change]:
    """Every uncommitted path: staged, unstaged and untracked (ignored files and the person's own untracked
    files, `keep_untracked`, are not changes)."""
    return status(top).changes


HARNESS_DIR = ".goalkeeper/"
"""goalkeeper's own folder in a repository; the model may never write there (tools/paths.py, HARNESS_PROTECT)."""

_KEPT: dict[str, Mapping[str, str]] = {}
"""Per top-level: the person's untracked files for a goal and their sha256 (GoalSettings.own_files), registered
by whoever lists the changes of that goal (its preflight, its runner, a rollback), so every listing in this
process agrees."""


_VOUCHED: dict[str, str] = {}
"""Per top-level: the commit HEAD named when the tree was seen clean, just before the harness's own commands
started in it ahead of the goal (the baseline's head start, run/head_start.py). Until the goal branch is made,
what changed since is theirs (a report, a cache), not the person's uncommitted work (`vouch_clean`)."""


def vouch_clean(workspace: Path, commit: str | None) -> None:
    """Say that the tree at `commit` was clean before the harness's commands began writing it (None: no longer
    said). preflight then counts no change as dirt while HEAD is still `commit`: in the order a goal ran before,
    those commands' files appeared only after the branch was made, and they are the goal's like any other."""
    top = str(toplevel(workspace))
    if commit is None:
        _VOUCHED.pop(top, None)
    else:
        _VOUCHED[top] = commit


def keep_untracked(workspace: Path, files: Mapping[str, str]) -> None:
    """Never count `files` (path relative to the top-level of `workspace` → sha256), while untracked and as they
    were, as changes in this process. The person wrote them for goalkeeper (the goal file, files under
    `.goalkeeper/`): they must neither block a goal (the dirty check) nor be committed on its branch. Changed, or
    made again after a deletion, a path is a change like any other (the model may not hide work there)."""
    _KEPT[str(toplevel(workspace))] = dict(files)


def person_files(workspace: Path, paths: Iterable[str]) -> tuple[dict[str, str], Status]:
    """`paths` (relative to the top-level) that are untracked files, and every untracked file under
    `.goalkeeper/`, each with its sha256 now: the person's own, when a goal is set; and the status they were
    read from (every untracked file in it), for the preflight that follows."""
    top = toplevel(workspace)
    _KEPT.pop(str(top), None)  # an earlier goal's in this process (the TUI, the server) must not hide one now
    seen = status(top)
    return own_untracked(top, seen, paths), seen


def own_untracked(top: Path, seen: Status, paths: Iterable[str]) -> dict[str, str]:
    """The person's own files in `seen` (see person_files), each with its sha256 now."""
    wanted = set(paths)
    found = {change.path: _sha256(top / change.path) for change in seen.changes
             if change.status == "??" and (change.path in wanted or change.path.startswith(HARNESS_DIR))}
    return {path: digest for path, digest in found.items() if digest}  # a link or a folder is never kept


def _kept(top: Path, path: str) -> bool:
    """Whether the untracked `path` is one of the person's own for goalkeeper, unchanged (`keep_untracked`)."""
    digest = _KEPT.get(str(top), {}).get(path)
    return digest is not None and _sha256(top / path) == digest


def _sha256(path: Path) -> str:
    """The file's sha256, or '' when it cannot be read as a file (gone, a link to nowhere, a folder)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if not path.is_symlink() else ""
    except OSError:
        return ""


@dataclass(frozen=True)
class Status:
    """The branch HEAD is on and every uncommitted path, from one `git status`."""

    branch: str | None
    """None for a detached HEAD."""
    changes: list[Change]
    head: str | None = None
    """The commit HEAD points at; None in a repository with no commits yet."""


def status(top: Path) -> Status:
    """HEAD's branch and every uncommitted path (staged, unstaged, untracked; not ignored), in one git process."""
    # --ignore-submodules=dirty: status would run inside each submodule (its own config, its own drivers);
    # a submodule's new HEAD still shows, and only that could be committed anyway.
    out = git(top, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", "--no-renames",
              "--ignore-submodules=dirty")
    branch: str | None = None
    head: str | None = None
    found: list[Change] = []
    for entry in out.split("\0"):
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            head = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            name = entry.removeprefix("# branch.head ")
            branch = None if name == "(detached)" else name
        elif entry.startswith("? "):
            if not _kept(top, entry[2:]):
                found.append(Change("??", entry[2:]))
        elif entry[:2] in ("1 ", "u "):
            fields = entry.split(" ", 8 if entry[0] == "1" else 10)
            found.append(Change(fields[1].replace(".", " "), fields[-1]))
    return Status(branch, found, head)


def list_paths(paths: Sequence[str]) -> str:
    """Up to LISTED_PATHS paths, one per indented line, for an error message."""
    shown = [f"  {path}" for path in paths[:LISTED_PATHS]]
    if len(paths) > LISTED_PATHS:
        shown.append(f"  … and {len(paths) - LISTED_PATHS} more")
    return "\n".join(shown)


def identity_flags(top: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` for whichever of the two the repository has not configured."""
    program, environment = _hardened_base(top)
    configured = _repository_config(program, top, environment).identity
    return [flag for key, value in (("user.name", HARNESS_NAME), ("user.email", HARNESS_EMAIL))
            if key not in configured for flag in ("-c", f"{key}={value}")]


def stage_all(top: Path, exclude: Sequence[str] = (), env: Mapping[str, str] | None = None,
              listed: Sequence[Change] | None = None) -> None:
    """`git add -A .` in `top` (every change below it, ignored files left out), but `exclude` (paths relative
    to `top`), with plumbing that never looks inside a nested repository or submodule.

    `git add` runs `git status` inside each submodule, whose own config could name a filter the harness
    never saw; ls-files and update-index only read a nested repository's HEAD. `env` may name a scratch
    index (GIT_INDEX_FILE). `listed`, the changes a `status` of `top` just found, saves listing them again.
    """
    skip = {path.rstrip("/") for path in exclude}

    def ls_files(*flags: str) -> list[str]:
        out = git(top, "ls-files", "-z", "--exclude-standard", *flags, env=env)
        return [path.rstrip("/") for path in dict.fromkeys(out.split("\0")) if path and path.rstrip("/") not in skip
                and not ("--others" in flags and _kept(top, path))]

    if listed is None:
        modified, untracked = ls_files("--modified", "--deleted"), ls_files("--others")
    else:  # only what differs from the index: a change already staged is in it
        unstaged = [change for change in listed if change.status == "??" or change.status[1] != " "]
        modified = [path for change in unstaged if (path := change.path.rstrip("/")) not in skip]
        untracked = []
    # A path below a link or a file, or that became a plain directory, leaves the index first (its files are
    # added after); a plain deleted file needs no pass of its own (--remove).
    gone = [path for path in modified if _beyond_link(top, path)
            or ((top / path).is_dir() and not (top / path).is_symlink() and not (top / path / ".git").exists())]
    for paths, flags in ((gone, ("--force-remove",)), ([p for p in modified if p not in gone] + untracked,
                                                       ("--add", "--remove"))):
        if paths:
            git(top, "update-index", *flags, "-z", "--stdin", stdin="\0".join(paths) + "\0", env=env)


def _beyond_link(top: Path, path: str) -> bool:
    """Whether a folder above `path` became a symbolic link or a file: git no longer sees the file (it is
    deleted), and staging it would fail ("beyond a symbolic link")."""
    parts = path.split("/")[:-1]
    for end in range(1, len(parts) + 1):
        above = top / "/".join(parts[:end])
        if above.is_symlink() or (os.path.lexists(above) and not above.is_dir()):
            return True
    return False


def commit_all(top: Path, subject: str, trailers: Sequence[tuple[str, str]],
               exclude: Sequence[str] = (), listed: Sequence[Change] | None = None) -> str | None:
    """Stage every change but `exclude` and commit it on the current branch; returns the new commit, or None
    if nothing staged. `listed` (a `status` of `top` just taken) makes it two git processes: stage, commit.

    Nothing stages when the only change is inside a submodule (`git add` does not reach into it).

    Hooks are skipped (hardened git: core.hooksPath=/dev/null, and --no-verify): a harness checkpoint must
    record the tree exactly as the turn left it, and a hook is a program the repository names.
    """
    stage_all(top, exclude, listed=listed)
    if listed is None and probe(top, "diff", "--cached", "--quiet").returncode == 0:
        return None
    body = "\n".join(f"{key}: {value}" for key, value in trailers)
    message = f"{subject}\n\n{body}\n" if body else f"{subject}\n"
    # diff.ignoreSubmodules: with nothing to commit, commit prints a status, which must not look inside one.
    committed = probe(top, *identity_flags(top), "-c", "diff.ignoreSubmodules=dirty", "commit", "-q",
                      "--no-verify", "--cleanup=whitespace", "-F", "-", stdin=message)
    if committed.returncode != 0:
        if probe(top, "diff", "--cached", "--quiet").returncode == 0:
            return None  # the listed changes staged to nothing (a change already undone)
        detail = (committed.stderr or committed.stdout).strip()
        raise WorkspaceError(f"`git commit` failed in {top}: {detail}",
                             hint="fix the repository state git reports, then try again")
    return head_from_files(top) or git(top, "rev-parse", "HEAD").strip()


OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
"""A full object id (SHA-1 or SHA-256), nothing around it (`fullmatch`)."""


_K = TypeVar("_K")
_V = TypeVar("_V")


class ByCommit(Generic[_K, _V]):
    """What was read at a commit named by its full id, for the last `size` keys: a commit holds what it holds,
    so the goals of a batch (one commit) ask git once. A commit named any other way is read every time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._known: dict[_K, _V] = {}
        self._lock = threading.Lock()

    def get(self, commit: str, key: _K, read: Callable[[], _V]) -> _V:
        if not OBJECT_ID.fullmatch(commit):
            return read()
        with self._lock:
            if key in self._known:
                return self._known[key]
        value = read()
        with self._lock:
            self._known[key] = value
            while len(self._known) > self.size:
                del self._known[next(iter(self._known))]  # the oldest
        return value


def head_from_files(top: Path) -> str | None:
    """The commit HEAD points at, read from the files: a detached HEAD's id, or its branch's loose ref file
    (where `git commit` just wrote it): HEAD in the git dir, the branch in the common dir (the same folder but
    in a linked worktree, where a batch's goals run). None for any other layout, a packed or unusual ref: the
    caller asks git."""
    try:
        dirs = _local_git_dirs(top)
        if dirs is None:
            return None
        git_dir, common = dirs
        head = (git_dir / "HEAD").read_text()
        if OBJECT_ID.fullmatch(head.strip()):
            return head.strip()
        if not head.startswith("ref: refs/heads/"):
            return None
        ref = head.removeprefix("ref: ").strip()
        if ".." in ref.split("/"):
            return None
        value = (common / ref).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value if OBJECT_ID.fullmatch(value) else None


def preflight(workspace: Path, allow_dirty: bool, seen: Status | None = None) -> Preflight:
    """Check that `workspace` is a git repository with at least one commit and (unless allowed) a clean tree,
    all from one `git status` (HEAD's commit and branch included): `seen`, one just taken by the caller, or a
    new one. The person's own untracked files (`keep_untracked`) are never dirt, whenever `seen` was taken."""
    top = toplevel(workspace)
    found = seen if seen is not None else status(top)
    if found.head is None:
        raise WorkspaceError(f"{top} has no commits yet, so there is nothing to branch a goal from",
                             hint="git add -A && git commit -m init")
    _refuse_operation_in_progress(top)
    dirty = [change.path for change in found.changes if change.status != "??" or not _kept(top, change.path)]
    if dirty and _VOUCHED.get(str(top)) == found.head:
        dirty = []  # written by the harness's own commands since the tree was seen clean (vouch_clean)
    if dirty and not allow_dirty:
        raise WorkspaceError(f"the working tree of {top} has uncommitted changes:\n{list_paths(dirty)}",
                             hint=DIRTY_HINT)
    return Preflight(top=top, head_branch=found.branch, head_commit=found.head, dirty=dirty)


def recover_stale_locks(top: Path, branch: str | None = None) -> list[Path]:
    """Delete the lock files a killed git left behind (index, HEAD, packed-refs, `branch`'s ref); returns them.

    git writes a new file beside the lock and renames it into place, so the locked file is intact and a
    lock nobody holds is only litter. A lock is stale when no live process has it open and no git process
    runs in this repository (a git that died under kill -9, goalkeeper's own included); otherwise it is
    respected and this is a WorkspaceError.
    """
    git_dir, common = git_dirs(top)
    candidates = [git_dir / "index.lock", git_dir / "HEAD.lock", common / "packed-refs.lock"]
    if branch is not None:
        candidates.append(common / "refs" / "heads" / f"{branch}.lock")
    found = {lock: lock.stat() for lock in candidates if lock.exists()}
    if not found:
        return []
    holder = _lock_holder(list(found), (top, git_dir, common))
    if holder is not None:
        names = ", ".join(str(lock) for lock in found)
        raise WorkspaceError(f"{names} is held by a running process ({holder})",
                             hint="wait for that git command to finish, then try again")
    removed = []
    for lock, seen in found.items():
        with contextlib.suppress(FileNotFoundError):
            now = lock.stat()
            if (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns):  # still the one we judged
                lock.unlink()
                removed.append(lock)
    return removed


def git_dirs(top: Path) -> tuple[Path, Path]:
    """(git dir, common dir) of `top`: its `.git` folder in the plain layout, a linked worktree's from its `.git`
    file and `commondir`, else as git says."""
    found = _local_git_dirs(top)
    if found is not None:
        return found
    return (Path(git(top, "rev-parse", "--absolute-git-dir").strip()),
            Path(git(top, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()))


def objects_key(top: Path) -> str:
    """What names the object store `top` reads, for caches of what a commit holds: its common git dir (every
    worktree of a repository shares it), or `top` itself in a layout only git could tell."""
    found = _local_git_dirs(top)
    return str(found[1]) if found is not None else str(top)


def _local_git_dirs(top: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) read from the files alone, in the two layouts the harness makes (a plain `.git`
    folder, a linked worktree's `.git` file and `commondir`); None for anything else."""
    dot_git = top / ".git"
    if dot_git.is_dir() and not dot_git.is_symlink() and not (dot_git / "commondir").exists():
        return dot_git, dot_git
    if dot_git.is_file() and (dirs := _dirs_from_files(top)) is not None:
        return Path(dirs[0]), Path(dirs[1])  # a linked worktree: its `.git` file says, as git reads it
    return None


def _lock_holder(locks: list[Path], places: tuple[Path, ...]) -> str | None:
    """`pid (name)` of a live process that has one of `locks` open or is a git running in `places`, else None."""
    wanted = {str(lock) for lock in locks}
    roots = [str(place.resolve()) for place in places]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            name = Path(entry.path, "comm").read_text().strip()
            holds = False
            if name == "git" or name.startswith("git-"):
                cwd = os.readlink(os.path.join(entry.path, "cwd"))
                holds = any(cwd == root or cwd.startswith(root + os.sep) for root in roots)
            if not holds:
                holds = any(os.readlink(fd.path).removesuffix(" (deleted)") in wanted
                            for fd in os.scandir(os.path.join(entry.path, "fd")))
            # A git killed with its group a moment ago (a forked child not yet exec'd, say) can still show its cwd
            # until the scheduler runs its exit; it will never write again, so its lock is litter all the same.
            if holds and process_is_alive(int(entry.name)):
                return f"{entry.name} ({name})"
        except OSError:
            continue  # gone meanwhile, or another user's process (not ours to judge)
    return None


def _refuse_operation_in_progress(top: Path) -> None:
    """A half-done merge, rebase or cherry-pick is the user's to finish: a goal never starts in the middle of one."""
    # Each marker is a file of the worktree's own git dir (what `git rev-parse --git-path` names): one look
    # at the git dir, not a git process per marker.
    git_dir, _ = git_dirs(top)
    for marker, operation in (("MERGE_HEAD", "merge"), ("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                              ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")):
        if (git_dir / marker).exists():
            raise WorkspaceError(f"a git {operation} is in progress in {top}",
                                 hint=f"finish or abort it (git {operation} --continue / --abort) first")


def clean_head(workspace: Path, paths: Iterable[str]) -> tuple[str, dict[str, str]] | None:
    """HEAD's commit and the person's own untracked files (`paths`; see person_files) when the working tree is
    clean but for those and nothing would stop a goal from starting here (preflight); else None. Unlike
    person_files it registers nothing: what it finds is only a forecast of what setting the goal will find."""
    top = toplevel(workspace)
    seen = status(top)
    own = own_untracked(top, seen, paths)
    if seen.head is None or any(change.path not in own for change in seen.changes):
        return None
    try:
        _refuse_operation_in_progress(top)
    except WorkspaceError:
        return None
    return seen.head, own


def goal_branch_name(goal_id: str, outcome: str) -> str:
    """`goal/<first 8 hex of the id after its prefix>-<slug of the outcome, at most 40 chars>`."""
    digits = re.sub(r"[^0-9a-f]", "", goal_id.rpartition("_")[2].lower())[:8]
    short_id = digits or hashlib.sha1(goal_id.encode()).hexdigest()[:8]
    ascii_outcome = unicodedata.normalize("NFKD", outcome).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_outcome.lower()).strip("-")[:40].rstrip("-")
    return f"goal/{short_id}-{slug or 'goal'}"


def start_goal(workspace: Path, goal_id: str, outcome: str, allow_dirty: bool, *, base: str | None = None,
               snapshot_subject: str = SNAPSHOT_SUBJECT) -> GoalBranch:
    """Create the goal branch from HEAD (or from the commit `base`) and check it out; with allow_dirty, commit
    the dirty tree onto it.

    The snapshot is committed after the switch, so the branch the user was on never gets a commit.
    """
    name = goal_branch_name(goal_id, outcome)
    # A run killed while it made the branch leaves git's locks behind, held by nobody (the branch may be made).
    recover_stale_locks(toplevel(workspace), name)
    checked = preflight(workspace, allow_dirty)
    start = checked.head_commit if base is None else commit_of(checked.top, base)
    if not branch_exists(checked.top, name):
        # From HEAD the switch never touches the working tree, so dirty changes come along. From another commit
        # git carries untracked files over and refuses to overwrite a change the switch would lose.
        git(checked.top, "checkout", "-q", "-b", name, start)
    elif commit_of(checked.top, name) == start:
        # This goal's own branch (its name holds the goal's id), made by a run killed before it was recorded,
        # with nothing on it yet: taken up, not refused.
        if checked.head_branch != name:
            git(checked.top, "checkout", "-q", name)
    else:
        raise WorkspaceError(f"the branch {name} already exists",
                             hint=f"resume that goal, or delete the branch (git branch -D {name})")
    snapshot = None
    if checked.dirty:
        snapshot = commit_all(checked.top, snapshot_subject, [("Goal-Id", goal_id)])
    return GoalBranch(name=name, base_commit=start, snapshot_commit=snapshot)


def commit_of(top: Path, revision: str) -> str:
    """The full id of the commit `revision` names; a WorkspaceError when the repository has no such commit."""
    done = probe(top, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise WorkspaceError(f"{top} has no commit {revision}",
                             hint="fetch it, or use the repository the commit came from")
    return done.stdout.strip()
