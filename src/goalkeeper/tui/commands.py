"""The TUI's slash commands: the table (with the one-line help `/help` and completion show), and parsing.

Pure: no I/O and no Textual; the app dispatches what these functions return.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandSpec:
    """One slash command as `/help` lists it."""

    name: str
    usage: str
    """How it is written, e.g. `/goal <objective> [--check NAME=CMD]…`."""
    help: str
    """One line saying what it does."""


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("goal", "/goal <objective> [--unverified] [--check NAME=CMD]…",
                "set the goal (asks before replacing one)"),
    CommandSpec("goal", "/goal", "show the goal's summary"),
    CommandSpec("goal", "/goal pause | resume [note] | clear",
                "pause it after the current step, resume it (a note is feedback the model reads), or clear it"),
    CommandSpec("budget", "/budget <tokens | $usd | time>", "raise the budget, e.g. /budget 50K, /budget $2, "
                                                           "/budget 30m"),
    CommandSpec("side", "/side <question>", "ask about the goal in an overlay; the goal keeps running"),
    CommandSpec("fork", "/fork [objective]", "a new thread, worktree and branch from this checkpoint (its own goal "
                                             "if given); this thread goes on untouched"),
    CommandSpec("plan", "/plan <objective>", "one read-only planning turn; shows the plan"),
    CommandSpec("status", "/status", "the goal's status, checks, budget and last checkpoint"),
    CommandSpec("diff", "/diff", "the goal branch's changes"),
    CommandSpec("report", "/report", "the goal's report (a PR description)"),
    CommandSpec("batch", "/batch [ID]", "a batch's goals, live (default: this repository's latest); Enter opens a "
                                         "goal's thread"),
    CommandSpec("help", "/help", "this list"),
    CommandSpec("quit", "/quit", "leave (a goal run by this window stops; resume it later)"),
)

NAMES: tuple[str, ...] = tuple(dict.fromkeys(spec.name for spec in COMMANDS))
"""Every command name, once, in table order."""

GOAL_ACTIONS = ("pause", "resume", "clear")

#: Words completed after `/goal `.
_ARGUMENT_WORDS: dict[str, tuple[str, ...]] = {"goal": GOAL_ACTIONS}


@dataclass(frozen=True)
class SlashCommand:
    """A parsed command line: the name as typed (lower-cased) and the rest of the line, stripped."""

    name: str
    args: str

    @property
    def known(self) -> bool:
        """True when the name is in the table."""
        return self.name in NAMES


@dataclass(frozen=True)
class GoalRequest:
    """`/goal <objective> [--check NAME=CMD]…`: the objective, and each check as `NAME=CMD` (or `CMD`)."""

    objective: str
    checks: tuple[str, ...] = ()
    unverified: bool = False
    """`--unverified` was written: a goal with no checks is allowed."""


def parse(line: str) -> SlashCommand | None:
    """The slash command on `line`, or None when it is a prompt for the chat (no leading `/`).

    `//text` is a prompt that starts with a slash, the escape for the rare message that needs one.
    """
    text = line.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, rest = text[1:].partition(" ")
    return SlashCommand(name.lower(), rest.strip())


def prompt_text(line: str) -> str:
    """The prompt a non-command line sends (the `//` escape loses one slash)."""
    text = line.strip()
    return text[1:] if text.startswith("//") else text


_UNVERIFIED_FLAG = re.compile(r"(?:^|\s)--unverified(?=\s|$)")
_CHECK_FLAG = re.compile(r"(?:^|\s)--check(?:\s+|=)")


def parse_goal(args: str) -> GoalRequest:
    """Split `/goal`'s arguments into the objective and its `--check` commands.

    The objective is taken as written (apostrophes and all); a check runs to the next `--check`, so
    `--check tests=pytest -q` needs no quotes. A check written in quotes has them removed (shlex).
    """
    objective, *checks = _CHECK_FLAG.split(args)
    # Only before the first --check: inside a check command the word is the command's own.
    unverified = bool(_UNVERIFIED_FLAG.search(objective))
    objective = _UNVERIFIED_FLAG.sub(" ", objective) if unverified else objective
    return GoalRequest(_unquoted(objective), tuple(_unquoted(check) for check in checks if check.strip()), unverified)


def _unquoted(text: str) -> str:
    """`text` stripped; when the whole of it is one shell word with quotes, without them."""
    text = text.strip()
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote, such as an apostrophe: the words are meant as written
        return text
    return words[0] if len(words) == 1 and ("'" in text or '"' in text) else text


def completions(line: str) -> list[str]:
    """Whole lines that complete `line`, in table order: command names after `/`, then `/goal`'s actions."""
    if not line.startswith("/") or "\n" in line:
        return []
    name, space, rest = line[1:].partition(" ")
    if not space:
        return [f"/{candidate} " if candidate in _ARGUMENT_WORDS or _takes_arguments(candidate) else f"/{candidate}"
                for candidate in NAMES if candidate.startswith(name.lower())]
    words = _ARGUMENT_WORDS.get(name.lower(), ())
    if " " in rest:
        return []
    return [f"/{name} {word}" for word in words if word.startswith(rest.lower()) and word != rest.lower()]


def suggestion(line: str) -> str | None:
    """The ghost text for `line`: the first completion, but none for a word not yet begun.

    After `/goal ` there are several actions and no reason to prefer one; showing `/goal pause` there would
    read as though Tab had completed to it.
    """
    candidates = completions(line)
    if not candidates or (line.endswith(" ") and len(candidates) > 1):
        return None
    return candidates[0]


def _takes_arguments(name: str) -> bool:
    return any(spec.name == name and "<" in spec.usage for spec in COMMANDS)


def matching_specs(line: str) -> list[CommandSpec]:
    """The table rows for the command being typed (shown under the input box as a hint)."""
    if not line.startswith("/"):
        return []
    name = line[1:].partition(" ")[0].lower()
    exact = [spec for spec in COMMANDS if spec.name == name]
    return exact or [spec for spec in COMMANDS if spec.name.startswith(name)]


def help_lines() -> list[tuple[str, str]]:
    """Each command's usage and its one-line help, for `/help`."""
    return [(spec.usage, spec.help) for spec in COMMANDS]
