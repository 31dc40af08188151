"""Takes a bash command line apart into the simple commands it runs, so rules.py can judge each one.

Best effort, and pure: quotes, escapes, comments, heredocs, `&&`/`||`/`;`/`|`/`&`/newlines, parentheses,
redirections, and the commands inside `$( )`, backticks, `<( )`, `bash -c '…'` and `eval` are understood;
aliases, functions and variables are not (a command hidden that way is not seen). Never runs anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish"})
DOWNLOADERS = frozenset({"curl", "wget", "fetch", "http", "https", "xh"})
"""Programs whose output is something fetched from the network."""

_OPERATORS = ("&&", "||", ";;", "|&", "&>>", "&>", ">>", ">&", ">|", "<<<", "<<-", "<<", "<&", "<>",
              "(", ")", ";", "|", "&", "<", ">")
"""Longest first, so `&&` is never read as two `&`."""
_OUTPUT_REDIRECTS = frozenset({"&>>", "&>", ">>", ">&", ">|", ">", "<>"})
_INPUT_REDIRECTS = frozenset({"<", "<&", "<<<", "<<", "<<-"})
_HARMLESS_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "-"})
_KEYWORDS = frozenset({"!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
                       "case", "esac"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "--user", "--group"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "-S", "--unset", "--chdir", "--split-string"}),
    "command": frozenset(), "builtin": frozenset(), "exec": frozenset({"-a"}), "nohup": frozenset(),
    "time": frozenset({"-f", "-o"}), "nice": frozenset({"-n", "--adjustment"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}), "stdbuf": frozenset({"-i", "-o", "-e"}),
    "ionice": frozenset({"-c", "-n", "-p"}), "xargs": frozenset({"-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E"}),
}
"""Programs that run the rest of their arguments as a command, with their options that take a value."""
_GIT_OPTIONS_WITH_VALUE = frozenset({"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env",
                                     "--super-prefix"})
MAX_DEPTH = 8
"""How deep substitutions and `bash -c` strings are followed."""


@dataclass(frozen=True)
class SimpleCommand:
    """One program run with its arguments (quotes removed), and what its surroundings say about it."""

    argv: tuple[str, ...]
    writes_file: bool = False
    """Its output is redirected into a file (not /dev/null)."""
    after_download: bool = False
    """Its standard input is a download: an earlier stage of its pipeline, or `< <(curl …)`."""
    substitutes_download: bool = False
    """One of its words is a `$( )`, backtick or `<( )` that downloads something."""


@dataclass
class _Word:
    text: str
    nested: list[str]
    """Command lines inside the word's substitutions."""


def program(argv: list[str] | tuple[str, ...]) -> str:
    """The program's name without its directory (`/usr/bin/git` is `git`); "" for no command."""
    return os.path.basename(argv[0]) if argv else ""


def core_argv(argv: list[str] | tuple[str, ...]) -> list[str]:
    """`argv` without leading `VAR=x` assignments, wrappers (`sudo`, `env`, `timeout 5`, …) and git's
    global options: `sudo -u x env A=1 git -C repo push` becomes `git push`. argv[0] loses its directory."""
    words = list(argv)
    while words:
        if _ASSIGNMENT.match(words[0]):
            words.pop(0)
            continue
        name = program(words)
        if name not in _WRAPPERS:
            break
        words.pop(0)
        while words and words[0].startswith("-") and words[0] != "-":
            del words[: 2 if words[0] in _WRAPPERS[name] else 1]
        if name == "timeout" and words:
            words.pop(0)  # the duration
    if not words:
        return []
    words[0] = program(words)
    if words[0] == "git":
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            del rest[: 2 if rest[0] in _GIT_OPTIONS_WITH_VALUE else 1]
        words = ["git", *rest]
    return words


def split_command(command: str, depth: int = 0) -> list[SimpleCommand]:
    """Every simple command `command` runs, nested ones (substitutions, `bash -c`, `eval`) included."""
    found: list[SimpleCommand] = []
    stage = _Stage()
    pipeline_downloads = False
    for token in _Scanner(command).scan():
        if isinstance(token, _Word):
            inner = [part for text in token.nested for part in split_command(text, depth + 1)] \
                if depth < MAX_DEPTH else []
            found.extend(inner)
            stage.add(token.text, any(program(core_argv(part.argv)) in DOWNLOADERS for part in inner))
        elif token in _OUTPUT_REDIRECTS or token in _INPUT_REDIRECTS:
            stage.redirect = token
        else:
            if stage.argv:
                found.append(stage.finish(pipeline_downloads))
                found.extend(_inline_commands(stage.argv, depth))
                pipeline_downloads = pipeline_downloads or program(core_argv(stage.argv)) in DOWNLOADERS
            if token not in ("|", "|&"):
                pipeline_downloads = False
            stage = _Stage()
    if stage.argv:
        found.append(stage.finish(pipeline_downloads))
        found.extend(_inline_commands(stage.argv, depth))
    return found


class _Stage:
    """The simple command being collected."""

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.redirect: str | None = None
        self.writes_file = self.stdin_download = self.substitutes_download = False

    def add(self, word: str, downloads: bool) -> None:
        if self.redirect is not None:  # the word is a redirection's target, not an argument
            if self.redirect in _OUTPUT_REDIRECTS and word not in _HARMLESS_TARGETS and not word.isdigit():
                self.writes_file = True
            self.stdin_download = self.stdin_download or (self.redirect in _INPUT_REDIRECTS and downloads)
            self.redirect = None
        elif self.argv or word not in _KEYWORDS:
            self.argv.append(word)
            self.substitutes_download = self.substitutes_download or downloads

    def finish(self, after_download: bool) -> SimpleCommand:
        return SimpleCommand(tuple(self.argv), self.writes_file, after_download or self.stdin_download,
                             self.substitutes_download)


def _inline_commands(argv: list[str], depth: int) -> list[SimpleCommand]:
    """The commands in `bash -c '…'` and `eval …`, judged like any others."""
    if depth >= MAX_DEPTH:
        return []
    core = core_argv(argv)
    if program(core) == "eval":
        return split_command(" ".join(core[1:]), depth + 1)
    if program(core) not in SHELLS:
        return []
    for index, word in enumerate(core[1:], start=1):
        if word.startswith("-") and not word.startswith("--") and "c" in word:
            text = next((later for later in core[index + 1:] if not later.startswith("-")), "")
            return split_command(text, depth + 1)
    return []


def _closing(text: str, start: int) -> int:
    """The index of the `)` that closes a `(` just before `start` (quotes respected); len(text) if none."""
    depth, index = 1, start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 1
        elif char in "'\"":
            end = text.find(char, index + 1)
            index = len(text) if end < 0 else end
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return len(text)


class _Scanner:
    """Turns a command line into words (quotes removed) and operators, the way bash would."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[_Word | str] = []
        self.chars: list[str] = []
        self.started = False
        self.nested: list[str] = []
        self.heredocs: list[str] = []
        self.heredoc_next = False

    def scan(self) -> list[_Word | str]:
        text = self.text
        while self.pos < len(text):
            char, after = text[self.pos], text[self.pos + 1 : self.pos + 2]
            if char in " \t\r":
                self.end_word()
                self.pos += 1
            elif char == "\n":
                self.end_word()
                self.tokens.append(";")
                self.pos += 1
                self.skip_heredocs()
            elif char == "\\":
                self.add("" if after == "\n" else after)
                self.pos += 2
            elif char == "'":
                end = text.find("'", self.pos + 1)
                end = len(text) if end < 0 else end
                self.add(text[self.pos + 1 : end])
                self.pos = end + 1
            elif char == '"':
                self.pos = self.double_quoted(self.pos + 1)
            elif char == "`" or (char == "$" and after == "(") or (char in "<>" and after == "("):
                self.pos = self.substitution(self.pos)
            elif char == "#" and not self.started:
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif char in "&|;()<>":
                self.operator()
            else:
                self.add(char)
                self.pos += 1
        self.end_word()
        return self.tokens

    def add(self, chars: str) -> None:
        self.chars.append(chars)
        self.started = True

    def end_word(self) -> None:
        if not self.started:
            return
        word = "".join(self.chars)
        if self.heredoc_next:
            self.heredocs.append(word)
            self.heredoc_next = False
        self.tokens.append(_Word(word, self.nested))
        self.chars, self.started, self.nested = [], False, []

    def operator(self) -> None:
        op = next(op for op in _OPERATORS if self.text.startswith(op, self.pos))
        if op[0] in "<>" and self.started and "".join(self.chars).isdigit():
            self.chars, self.started = [], False  # `2>`: the digits name a file descriptor
        self.end_word()
        self.tokens.append(op)
        self.heredoc_next = op in ("<<", "<<-")
        self.pos += len(op)

    def substitution(self, start: int) -> int:
        """Reads `$( )`, backticks or `<( )`/`>( )` from `start`; the command inside is kept as nested."""
        text = self.text
        if text[start] == "`":
            end = text.find("`", start + 1)
            end = len(text) if end < 0 else end
            inner = text[start + 1 : end]
        else:
            end = _closing(text, start + 2)
            inner = text[start + 2 : end]
        if not inner.startswith("("):  # `$((…))` is arithmetic, not a command
            self.nested.append(inner)
        self.add(text[start : end + 1])
        return end + 1

    def double_quoted(self, index: int) -> int:
        """Reads a "…" string from `index` (just past the quote); returns the index past its end."""
        text = self.text
        self.started = True
        while index < len(text) and text[index] != '"':
            char = text[index]
            if char == "\\" and index + 1 < len(text):
                following = text[index + 1]
                self.add(following if following in '"\\$`' else "" if following == "\n" else char + following)
                index += 2
            elif char == "`" or (char == "$" and text[index + 1 : index + 2] == "("):
                index = self.substitution(index)
            else:
                self.add(char)
                index += 1
        return index + 1

    def skip_heredocs(self) -> None:
        """After a line with `<<EOF`, skips the heredoc's lines: they are data, not commands."""
        for delimiter in self.heredocs:
            while self.pos < len(self.text):
                end = self.text.find("\n", self.pos)
                end = len(self.text) if end < 0 else end
                line = self.text[self.pos : end]
                self.pos = end + 1
                if line.strip() == delimiter:
                    break
        self.heredocs.clear()
