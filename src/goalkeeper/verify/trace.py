"""Watches what a check really touches: runs it under `strace -f` inside its sandbox and reads the log.

At baseline every check and keep_green command runs once through a `Tracer`. strace records the file, exec
and directory-read calls of the command and of every process it starts; `read_trace` turns the log into the
workspace paths that were read, executed, probed and not found, and the directories that were listed.
The tracer runs inside the sandbox (bwrap with --cap-drop ALL and --unshare-pid lets a process trace its
own children), with only its log folder bound writable, so tracing changes nothing the check can see.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from goalkeeper.sandbox.bwrap import require_sandbox, sandbox_argv
from goalkeeper.sandbox.limits import process_limit
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.sandbox.process import BASH, CommandResult, command_script, run_command

#: The calls that show a path being opened, executed, stat-ed, probed or listed, and the ones that move the
#: working directory or start a process (to resolve relative paths).
TRACED_CALLS = ("open", "openat", "openat2", "creat", "stat", "lstat", "newfstatat", "statx", "access",
                "faccessat", "faccessat2", "execve", "execveat", "readlink", "readlinkat", "getdents64",
                "chdir", "fchdir", "clone", "clone3", "fork", "vfork")

#: strace's options: follow children, quiet, fds shown with their paths (-y), only the traced calls stop
#: the tracee (--seccomp-bpf keeps the cost low), no signal lines and no decoded structures. Each call is
#: marked `?`: an architecture without it (aarch64 has no open, stat or fork) is not an error.
STRACE_OPTIONS = ("-f", "-qq", "-y", "--seccomp-bpf", "-e", "signal=none", "-e", "verbose=none",
                  "-e", "trace=" + ",".join(f"?{name}" for name in TRACED_CALLS))

#: Errors that mean "looked for, not there": the check probed a path that did not exist.
_ABSENT = ("ENOENT", "ENOTDIR")

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z_0-9]+)\((.*)$", re.DOTALL)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$", re.DOTALL)
_UNFINISHED = " <unfinished ...>"
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)(?:<(?P<fd>(?:[^>\\]|\\.)*)>)?(?:\s+(?P<err>E[A-Z0-9]+))?")
# A quoted string or an fd's path (kept whole, escapes and all), a bracket or comma, or a run of anything else.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|<(?:[^>\\]|\\.)*>?|[\[\]{}(),]|[^"<\[\]{}(),]+', re.DOTALL)
_OCTAL = re.compile(rb"\\([0-7]{1,3})")
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f", b'"': b'"', b"\\": b"\\",
                   b"a": b"\a", b"b": b"\b"}


@dataclass
class Accesses:
    """Absolute paths (as the kernel saw them, `..` folded) grouped by what a traced command did to them."""

    read: set[str] = field(default_factory=set)
    """Opened for reading (or refused: EACCES, ELOOP), and there."""
    stat: set[str] = field(default_factory=set)
    """Stat-ed, access-ed or readlink-ed, and there: its existence mattered, perhaps not its content."""
    executed: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    """Looked for (any of the calls) and not found: ENOENT or ENOTDIR."""
    written: set[str] = field(default_factory=set)
    """Opened write-only or created: the command's output, not its input."""
    listed: set[str] = field(default_factory=set)
    """Directories whose entries were read (getdents64)."""

    def merge(self, other: Accesses) -> None:
        """Add `other`'s paths to these."""
        for name in ("read", "stat", "executed", "missing", "written", "listed"):
            getattr(self, name).update(getattr(other, name))


# ---------------------------------------------------------------- reading a log


def unescape(text: str) -> str:
    """A string as strace printed it (C escapes, octal and hex bytes) back to the path it names."""
    if "\\" not in text:
        return text  # the common case, and the hot one: a trace holds tens of thousands of paths
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index:index + 1]
        if byte != b"\\" or index + 1 == len(raw):
            out += byte
            index += 1
            continue
        following = raw[index + 1:index + 2]
        if following == b"x" and re.fullmatch(rb"[0-9a-fA-F]{2}", raw[index + 2:index + 4]):
            out.append(int(raw[index + 2:index + 4], 16))
            index += 4
        elif (octal := _OCTAL.match(raw, index)) is not None:
            out.append(int(octal.group(1), 8) & 0xFF)
            index = octal.end()
        else:
            out += _SIMPLE_ESCAPES.get(following, following)
            index += 2
    return os.fsdecode(bytes(out))


def split_args(text: str) -> list[str]:
    """The top-level arguments of one call as printed (`a, "b,c", {x, y}, 3</p,q>`), each stripped."""
    args: list[str] = []
    current: list[str] = []
    depth = 0
    for token in _TOKEN.findall(text):
        if token in "[{(":
            depth += 1
        elif token in "]})":
            depth -= 1
        elif token == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(token)
    if "".join(current).strip():
        args.append("".join(current).strip())
    return args


def _string(arg: str) -> str | None:
    """The value of a quoted string argument; None for anything else or a string strace cut short."""
    if len(arg) < 2 or not arg.startswith('"') or not arg.endswith('"'):
        return None
    return unescape(arg[1:-1])


def _fd_path(arg: str) -> str | None:
    """The path strace -y printed after a descriptor (`3</a/b>`, `AT_FDCWD</cwd>`), or None."""
    match = re.fullmatch(r"(?:\d+|AT_FDCWD)<(.*)>", arg, re.DOTALL)
    return unescape(match.group(1)) if match else None


@dataclass(frozen=True)
class Call:
    """One finished system call of one process."""

    pid: int
    name: str
    args: list[str]
    result: str
    """The return value as printed (`0`, `3`, `-1`, `?`)."""
    error: str | None
    """The errno name of a failed call."""
    result_path: str | None
    """The path of a returned descriptor (strace -y), e.g. what openat opened."""


def calls(lines: Iterable[str]) -> Iterator[Call]:
    """The calls of an `strace -f -y` log in the order they started: an unfinished call and its resumption
    are joined and reported where it began, so a child never shows up before the clone that made it.
    Memory stays bounded by the calls waiting on an unfinished one, not by the log's length."""
    pending: dict[int, tuple[int, str, str]] = {}  # pid -> (slot, name, arguments so far)
    ready: dict[int, Call | None] = {}  # slot -> the finished call (None: a line without a result)
    next_slot = emitted = 0
    for line in lines:
        matched = _LINE.match(line.rstrip("\n"))
        if matched is None:
            continue
        pid, rest = int(matched.group(1)), matched.group(2)
        if rest.endswith(_UNFINISHED) and (call := _CALL.match(rest)) is not None:
            pending[pid] = (next_slot, call.group(1), call.group(2)[: -len(_UNFINISHED)])
            next_slot += 1
            continue
        if (resumed := _RESUMED.match(rest)) is not None:
            slot, name, head = pending.pop(pid, (next_slot, resumed.group(1), ""))
            next_slot += slot == next_slot
            ready[slot] = _finished(pid, name, head + resumed.group(2))
        elif (call := _CALL.match(rest)) is not None:
            ready[next_slot] = _finished(pid, call.group(1), call.group(2))
            next_slot += 1
        else:
            continue
        waiting = {slot for slot, _, _ in pending.values()}
        while emitted < next_slot and emitted not in waiting:
            done = ready.pop(emitted, None)
            emitted += 1
            if done is not None:
                yield done
    # Calls still unfinished when the log ended (a killed process) are lost; the rest come out in order.
    yield from (done for _, done in sorted(ready.items()) if done is not None)


def _finished(pid: int, name: str, text: str) -> Call | None:
    """A call from `args) = result...`; None when the text has no result (strace was killed mid-line)."""
    # The last `) = ` is the result: an argument may print `) = ` too.
    result = next(reversed(list(_RESULT.finditer(text))), None)
    if result is None:
        return None
    return Call(pid, name, split_args(text[: result.start()]), result.group(1), result.group("err"),
                unescape(result.group("fd")) if result.group("fd") is not None else None)


def read_trace(lines: Iterable[str], cwd: Path) -> Accesses:
    """What the traced command did, from its log; `cwd` is where it started (relative paths of processes
    whose directory the log never showed are resolved against it)."""
    found = Accesses()
    cwds: dict[int, str] = {}
    start = os.path.abspath(cwd)
    for call in calls(lines):
        here = cwds.setdefault(call.pid, start)
        if call.name in ("clone", "clone3", "fork", "vfork"):
            if call.result.isdigit():
                cwds[int(call.result)] = here
            continue
        if call.name == "chdir":
            path = _string(call.args[0]) if call.args else None
            if path is not None and call.error is None:
                cwds[call.pid] = _join(here, path)
            continue
        if call.name == "fchdir":
            path = _fd_path(call.args[0]) if call.args else None
            if path is not None and call.error is None:
                cwds[call.pid] = path
            continue
        if call.name == "getdents64":
            path = _fd_path(call.args[0]) if call.args else None
            if path is not None:
                found.listed.add(os.path.normpath(path))
            continue
        _record(found, call, cwds)
    return found


#: For each call: the index of its directory descriptor (None: relative to the cwd) and of its path.
_PATH_ARGS: dict[str, tuple[int | None, int]] = {
    "open": (None, 0), "creat": (None, 0), "stat": (None, 0), "lstat": (None, 0), "access": (None, 0),
    "execve": (None, 0), "readlink": (None, 0), "openat": (0, 1), "openat2": (0, 1), "newfstatat": (0, 1),
    "statx": (0, 1), "faccessat": (0, 1), "faccessat2": (0, 1), "execveat": (0, 1), "readlinkat": (0, 1),
}


def _record(found: Accesses, call: Call, cwds: dict[int, str]) -> None:
    where = _PATH_ARGS.get(call.name)
    if where is None:
        return
    dir_index, path_index = where
    if len(call.args) <= path_index:
        return
    path = _string(call.args[path_index])
    if path is None or path == "":  # "" with AT_EMPTY_PATH: a stat of an open descriptor, seen when opened
        return
    base = cwds[call.pid]
    if dir_index is not None:
        directory = call.args[dir_index]
        decorated = _fd_path(directory)
        if directory.startswith("AT_FDCWD") and decorated is not None:
            cwds[call.pid] = base = decorated  # -y shows the process's cwd: keep it current
        elif decorated is not None:
            base = decorated
        elif not directory.startswith("AT_FDCWD") and not path.startswith("/"):
            return  # relative to a descriptor strace could not name
    absolute = _join(base, path)
    if call.error is not None:
        if call.error in _ABSENT and not _writes(call):
            found.missing.add(absolute)
        elif call.error not in _ABSENT:
            found.read.add(absolute)  # there, but refused (EACCES, ELOOP...): still looked at
        return
    if call.name in ("execve", "execveat"):
        found.executed.add(absolute)
    elif _writes(call):
        found.written.add(absolute)
    elif call.name in ("open", "openat", "openat2"):
        found.read.add(absolute)
    else:
        found.stat.add(absolute)


def _writes(call: Call) -> bool:
    """Whether an open is write-only or creates: output, never an input the check depends on."""
    if call.name == "creat":
        return True
    if call.name not in ("open", "openat", "openat2"):
        return False
    flags = call.args[2 if call.name != "open" else 1] if len(call.args) > (2 if call.name != "open" else 1) else ""
    return "O_WRONLY" in flags or ("O_CREAT" in flags and "O_RDWR" not in flags)


def _join(base: str, path: str) -> str:
    return os.path.normpath(path if path.startswith("/") else os.path.join(base, path))


# ---------------------------------------------------------------- running under the tracer


def strace_binary() -> str | None:
    """Where strace is, or None."""
    return shutil.which("strace")


@functools.cache
def _self_test(strace: str, mode: str, argv_prefix: tuple[str, ...]) -> str | None:
    """Why strace cannot trace a child here (ptrace refused, seccomp missing), or None."""
    folder = Path(tempfile.mkdtemp(prefix="goalkeeper-trace-test-"))
    try:
        log = folder / "log"
        argv = [*argv_prefix, strace, *STRACE_OPTIONS, "-o", str(log), "--", "/bin/true"]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if done.returncode != 0 or not log.is_file() or "execve" not in log.read_text(errors="replace"):
            return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def tracer_problem(sandbox: SandboxPolicy | None) -> str | None:
    """Why checks cannot be traced under `sandbox` (strace missing, or it cannot trace inside), or None."""
    strace = strace_binary()
    if strace is None:
        return "strace is not installed (apt-get install -y strace)"
    if sandbox is None or sandbox.mode == "danger-full-access":
        return _self_test(strace, "none", ())
    bwrap = shutil.which("bwrap") or "bwrap"
    prefix = (bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
              "--bind", tempfile.gettempdir(), tempfile.gettempdir(), "--unshare-pid", "--die-with-parent",
              "--cap-drop", "ALL", "--")
    problem = _self_test(strace, sandbox.mode, prefix)
    return None if problem is None else f"strace cannot trace inside the sandbox: {problem}"


def _seen_at(sandbox: SandboxPolicy | None, cwd: Path) -> Path:
    """Where `cwd` appears to the command: a sandbox may bind its workspace elsewhere (`bound_at`)."""
    bound_at: Path | None = getattr(sandbox, "bound_at", None)
    if sandbox is None or bound_at is None or not cwd.is_relative_to(sandbox.workspace):
        return cwd
    return bound_at / cwd.relative_to(sandbox.workspace)


#: How often a log being followed is looked at again for new lines.
FOLLOW_POLL_S = 0.02


def open_log(log: Path, ended: threading.Event) -> BinaryIO | None:
    """`log` opened for reading once strace has made it, or None: it never appeared before `ended`, or it is
    not a regular file. The traced command can write to the log's folder, so it is never opened through a
    link, and never in a way that blocks (a FIFO put in its place)."""
    while True:
        finished = ended.is_set()  # taken before the look: a log made before the end is found
        try:
            fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if finished:
                return None
            ended.wait(FOLLOW_POLL_S)
            continue
        except OSError:  # a link (ELOOP), or not ours to read
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")  # reads of a regular file never block, O_NONBLOCK or not


def follow(log: BinaryIO, ended: threading.Event) -> Iterator[str]:
    """The lines of an open log as strace writes them, until `ended` is set and everything written is read.
    Bytes are split into lines before decoding: a read may end mid-character."""
    pending = b""
    while True:
        finished = ended.is_set()  # taken before the read: what was written before the end is read
        chunk = log.read()
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.decode("utf-8", "surrogateescape") + "\n" for line in lines)
        elif finished:
            if pending:
                yield pending.decode("utf-8", "surrogateescape")
            return
        else:
            ended.wait(FOLLOW_POLL_S)


class Tracer:
    """Runs commands under strace and keeps their logs in a private folder until `close`. Each log is
    parsed in a worker thread while its command runs, so the accesses are ready when the command ends."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="goalkeeper-trace-"))
        self.logs: list[tuple[Path, str]] = []
        """(log, the command) for each run."""
        self.parsed: dict[Path, Accesses] = {}
        """The accesses read from each log strace wrote (none for a log that never appeared or was replaced
        by something other than a file before it was opened)."""

    async def run(self, sandbox: SandboxPolicy | None, command: str, cwd: Path, timeout_s: float,
                  env: dict[str, str] | None = None) -> CommandResult:
        """`command` as run_confined runs it, traced; its exit code and output are the command's own."""
        strace = strace_binary() or "strace"
        number = len(self.logs)
        inner, log = self.folder / f"{number}.sh", self.folder / f"{number}.trace"
        inner.write_bytes(command.encode("utf-8", "surrogateescape"))
        self.logs.append((log, command))
        # exec: strace takes the shell's place, so the exit code and the process group are the command's.
        wrapped = "exec " + shlex.join([strace, *STRACE_OPTIONS, "-o", str(log), "--", BASH, str(inner)])
        ended = threading.Event()
        parsing = asyncio.ensure_future(asyncio.to_thread(self._parse, log, _seen_at(sandbox, cwd), ended))
        try:
            if sandbox is None or sandbox.mode == "danger-full-access":
                result = await run_command(wrapped, cwd, timeout_s, env=env)
            else:
                result = await self._sandboxed(sandbox, wrapped, cwd, timeout_s, env)
        finally:
            ended.set()  # strace has exited (or never started): the rest of its log is all there is
        await parsing
        return dataclasses.replace(result, command=command)

    def _parse(self, log: Path, cwd: Path, ended: threading.Event) -> None:
        """Read `log` while strace writes it (in a worker thread), keeping what it shows if it appeared."""
        opened = open_log(log, ended)
        if opened is not None:
            with opened:
                self.parsed[log] = read_trace(follow(opened, ended), cwd)

    async def _sandboxed(self, policy: SandboxPolicy, wrapped: str, cwd: Path, timeout_s: float,
                         env: dict[str, str] | None) -> CommandResult:
        """sandbox.bwrap.run_sandboxed, with the log folder bound writable (in every mode: it is outside the
        workspace and only strace writes there)."""
        await asyncio.to_thread(require_sandbox, policy)
        with command_script(wrapped) as script:
            home = Path((env if env is not None else os.environ).get("HOME") or Path.home())
            argv = await asyncio.to_thread(sandbox_argv, policy, wrapped, home, cwd, script)
            at = argv.index("--chdir")
            argv[at:at] = ["--bind", str(self.folder), str(self.folder)]
            async with process_limit(policy.max_processes) as limit:
                return await run_command([*limit.prefix, *argv], cwd, timeout_s, env=env,
                                         max_capture_bytes=policy.max_output_bytes)

    def accesses(self) -> tuple[Accesses, list[str]]:
        """Every run's accesses merged, and the commands whose log is missing (strace never started)."""
        merged, lost = Accesses(), []
        for log, command in self.logs:
            if log in self.parsed:
                merged.merge(self.parsed[log])
            else:
                lost.append(command)
        return merged, lost

    def close(self) -> None:
        """Remove the logs."""
        shutil.rmtree(self.folder, ignore_errors=True)
