"""Command rules and the approval policy: whether one shell command may run, must be asked about, or is denied.

Pure decisions, no I/O: `decide_command` returns a `CommandDecision`; the tool registry acts on it and
the runner records it as an event. Command lines are taken apart by shell_words.py.

How a command is judged. The command line is split into simple commands (at `&&`, `||`, `;`, `|`, `&`,
newlines and parentheses; the insides of `$( )`, backticks, `<( )`, `bash -c '…'` and `eval` are judged
as commands of their own). Each simple command gets a verdict, in this order:

1. Guards that nothing overrides: a recursive `rm` of `/`, `/*`, `~` or `$HOME` (any flags, `sudo`,
   `--no-preserve-root`), and a download piped or substituted into a shell or interpreter
   (`curl … | sh`, `wget -O- … | sudo bash`, `bash <(curl …)`, `sh -c "$(curl …)"`).
2. The user's `[[rules]]`. A rule's `match` glob covers the whole simple command (`*` is any text). It
   is tried on the command as written and on its core: wrappers (`sudo`, `env`, `VAR=x`, `command`,
   `nohup`, `timeout`, …) and git's global options (`-C dir`, `-c k=v`, …) removed. Deny and ask rules
   match either form, allow rules only the written one, so a wrapper cannot slip a command past a deny
   and an allow never covers more than it says. When several rules match, the strictest wins
   (deny, then ask, then allow), as in Codex's exec policy; so rules from every config file add up.
3. The default denies (`DEFAULT_RULES`, and `git checkout`/`git switch` of a branch other than the goal
   branch). A user rule can allow these explicitly.
4. The approval policy: `untrusted` asks about anything not on a small read-only list (ls, cat, grep,
   rg, git status/diff/log/show, …); `on-request` and `never` allow.

The command's decision is the first deny among its simple commands, else the first ask, else allow.
An ask becomes a deny when the policy is `never` (nothing is ever asked) or the run is headless.

Remembered approvals. When a person approves an ask "for the rest of this goal", the approval covers a
prefix of each simple command that was asked about (`command_prefix`, a rule glob such as `npm test*`).
Such a rule only ever turns an ask into an allow (`asked_commands` says which parts would ask): a deny
is never affected. A command the guards or the default rules deny (`git push`, leaving the goal branch)
that a user's ask rule turned into an ask is approved once at most: it is never remembered, and no
remembered rule covers it, so a remembered `git checkout*` still cannot leave the goal branch.

Tool rules. A rule written with `tool = "GLOB"` instead of `match` judges calls of tools the harness does not
know (the MCP servers' `NAME__tool`) by the tool's name, never a shell command (`decide_tool`). The strictest
matching tool rule wins; with none, such a tool is judged like a shell command that is not known to be
read-only: `untrusted` asks, `on-request` and `never` allow. An ask is a deny when nobody can answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from goalkeeper.sandbox.globs import command_matches
from goalkeeper.sandbox.shell_words import SHELLS, SimpleCommand, core_argv, program, split_command

ApprovalPolicy = Literal["untrusted", "on-request", "never"]
"""Codex's names: `untrusted` asks before anything not known to be read-only, `on-request` runs what no
rule stops, `never` never asks (what would be asked is denied)."""

RuleAction = Literal["deny", "ask", "allow"]
"""What a rule says about the commands it matches."""

_STRICTNESS: dict[RuleAction, int] = {"deny": 0, "ask": 1, "allow": 2}


@dataclass(frozen=True)
class Rule:
    """One `[[rules]]` table: commands matching `match` are denied, asked about, or allowed."""

    match: str
    """A glob over one simple command: `*` is any text, `?` one character; `git push*`."""
    action: RuleAction
    reason: str = ""
    """Told to the model (and the person) when the rule denies or asks."""
    tool: bool = False
    """`match` is a glob over a tool's name (`fs__write_*`), not over a shell command (see `decide_tool`)."""


@dataclass(frozen=True)
class CommandDecision:
    """What should happen to one shell command, and why."""

    action: RuleAction
    reason: str
    """Why, in words the model can act on."""
    rule: str | None = None
    """The rule (its `match`, or a guard's name) that decided, if one did."""


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("git push*", "deny", "pushing publishes the goal's work; the person reviews and pushes it"),
    Rule("git reset *--hard*", "deny",
         "a hard reset throws work away; use `git restore <path>` or `git stash` instead"),
)
"""Denied unless a user rule allows them. The branch check (`BRANCH_RULE`) is built in beside them."""

ROOT_GUARD = "rm -rf /"
"""The guard against deleting the root or home directory; no rule overrides it."""
DOWNLOAD_GUARD = "download | shell"
"""The guard against running a downloaded script; no rule overrides it."""
BRANCH_RULE = "git checkout/switch <other branch>"
"""The built-in default deny of leaving the goal branch."""

READ_ONLY_PROGRAMS = frozenset({
    "ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "rg", "pwd", "echo", "which", "stat",
    "file", "tree", "du", "df", "true", "false", "basename", "dirname", "realpath",
})
"""Programs `untrusted` runs without asking (when they write no file through a redirect)."""
READ_ONLY_GIT = frozenset({"status", "diff", "log", "show", "blame", "rev-parse", "ls-files"})
"""git subcommands `untrusted` runs without asking."""
_UNSAFE_OPTIONS = ("--output", "--ext-diff", "--pre", "--exec")
"""Options that make a read-only program write a file or run another program."""

_INTERPRETERS = frozenset({"python", "perl", "ruby", "node", "php"})
_HOMES = ("~", "$HOME", "${HOME}")

SUBCOMMAND_TOOLS = frozenset({
    "git", "npm", "pnpm", "yarn", "npx", "bun", "deno", "cargo", "rustup", "go", "uv", "pip", "pip3", "pipx",
    "poetry", "hatch", "pdm", "conda", "docker", "podman", "kubectl", "helm", "make", "gmake", "just", "gh",
    "terraform", "dotnet", "mvn", "gradle", "apt", "apt-get", "brew", "systemctl",
})
"""Programs whose first argument names what they do (`git commit`, `npm test`, `make deploy`): a remembered
approval covers the program and that subcommand, never the whole program."""


def decide_command(command: str, rules: Sequence[Rule], policy: ApprovalPolicy, goal_branch: str | None,
                   headless: bool) -> CommandDecision:
    """Whether `command` may run under `rules` (the user's) and `policy` (see the module docstring)."""
    verdicts = [_judge(part, rules, policy, goal_branch) for part in split_command(command)]
    decision = (next((verdict for verdict in verdicts if verdict.action == "deny"), None)
                or next((verdict for verdict in verdicts if verdict.action == "ask"), None)
                or next((verdict for verdict in verdicts if verdict.rule is not None), None)
                or CommandDecision("allow", f"no rule stops it (approval_policy `{policy}`)"))
    if decision.action != "ask":
        return decision
    if policy == "never":
        return CommandDecision("deny", f"{decision.reason}; approval_policy is `never`, so nothing is asked",
                               decision.rule)
    if headless:
        return CommandDecision("deny", f"needs approval, and this run is headless: {decision.reason}",
                               decision.rule)
    return decision


def _judge(part: SimpleCommand, rules: Sequence[Rule], policy: ApprovalPolicy,
           goal_branch: str | None) -> CommandDecision:
    """The verdict on one simple command: guards, user rules, default rules, then the policy."""
    written = " ".join(part.argv)
    core = core_argv(part.argv)
    guard = _guard(part, core)
    if guard is not None:
        return guard
    user = _user_rule(rules, written, " ".join(core))
    if user is not None:
        verb = {"deny": "denied", "ask": "needs approval", "allow": "allowed"}[user.action]
        because = f": {user.reason}" if user.reason else ""
        return CommandDecision(user.action, f"`{written}` {verb} by rule `{user.match}`{because}", user.match)
    for rule in DEFAULT_RULES:
        if command_matches(rule.match, " ".join(core)):
            return CommandDecision("deny", f"`{written}`: {rule.reason}", rule.match)
    leaves = _leaves_goal_branch(core, goal_branch)
    if leaves is not None:
        return CommandDecision("deny", f"`{written}`: {leaves}", BRANCH_RULE)
    if policy == "untrusted" and not _is_read_only(part):
        return CommandDecision("ask", f"`{written}` is not a known read-only command, and approval_policy "
                                      "is `untrusted`")
    return CommandDecision("allow", "no rule stops it")


def _user_rule(rules: Sequence[Rule], written: str, core: str) -> Rule | None:
    """The strictest user rule matching the command (allow only on the written form); the first on ties.
    Tool rules never match a command."""
    matching = [rule for rule in rules
                if not rule.tool and (command_matches(rule.match, written)
                                      or (rule.action != "allow" and command_matches(rule.match, core)))]
    return min(matching, key=lambda rule: _STRICTNESS[rule.action], default=None)


def decide_tool(name: str, rules: Sequence[Rule], policy: ApprovalPolicy, headless: bool) -> CommandDecision:
    """Whether a call of the tool `name` may run: the strictest `tool` rule matching the name, else the policy
    as for a command that is not known to be read-only (see the module docstring)."""
    matching = [rule for rule in rules if rule.tool and command_matches(rule.match, name)]
    rule = min(matching, key=lambda rule: _STRICTNESS[rule.action], default=None)
    if rule is not None:
        verb = {"deny": "denied", "ask": "needs approval", "allow": "allowed"}[rule.action]
        because = f": {rule.reason}" if rule.reason else ""
        decision = CommandDecision(rule.action, f"tool `{name}` {verb} by rule `tool = {rule.match}`{because}",
                                   f"tool = {rule.match}")
    elif policy == "untrusted":
        decision = CommandDecision("ask", f"tool `{name}` is not known to be read-only, and approval_policy is "
                                          "`untrusted`")
    else:
        return CommandDecision("allow", f"no rule stops tool `{name}` (approval_policy `{policy}`)")
    if decision.action == "ask" and policy == "never":
        return CommandDecision("deny", f"{decision.reason}; approval_policy is `never`, so nothing is asked",
                               decision.rule)
    if decision.action == "ask" and headless:
        return CommandDecision("deny", f"needs approval, and this run is headless: {decision.reason}",
                               decision.rule)
    return decision


def _guard(part: SimpleCommand, core: list[str]) -> CommandDecision | None:
    """The guards no rule overrides: deleting `/` or home, and running a downloaded script."""
    written = " ".join(part.argv)
    if _removes_root(core):
        return CommandDecision("deny", f"`{written}` would delete the root or home directory; never run this",
                               ROOT_GUARD)
    if part.after_download and _reads_script_from_stdin(core):
        return CommandDecision("deny", f"`{written}` runs a downloaded script; download it to a file, read "
                                       "it, and ask the person to run it", DOWNLOAD_GUARD)
    if part.substitutes_download and _runner(core) in SHELLS | _INTERPRETERS | {"source", ".", "eval"}:
        return CommandDecision("deny", f"`{written}` runs a downloaded script; download it to a file, read "
                                       "it, and ask the person to run it", DOWNLOAD_GUARD)
    return None


def _removes_root(argv: list[str]) -> bool:
    """`rm` with a recursive flag and `/`, `/*`, `~`, `$HOME` (or the like) among its targets."""
    if program(argv) != "rm":
        return False
    recursive, targets, options_done = False, [], False
    for word in argv[1:]:
        if options_done or not word.startswith("-") or word == "-":
            targets.append(word)
        elif word == "--":
            options_done = True
        elif word == "--recursive" or (not word.startswith("--") and ("r" in word or "R" in word)):
            recursive = True
    return recursive and any(_is_root_or_home(target) for target in targets)


def _is_root_or_home(target: str) -> bool:
    """`/`, `//`, `/.`, `/*`, `/.*`, `~`, `~/`, `~/*`, `$HOME/*` …: a path naming everything under a root."""
    text = target
    for home in _HOMES:
        if text == home or text.startswith(home + "/"):
            text = "/" + text[len(home):]
            break
    if not text.startswith("/"):
        return False
    return all(part in ("", ".", "..", "*", ".*", "*.*") for part in text.split("/"))


def _runner(argv: list[str]) -> str:
    """The program's name with a version suffix dropped (`python3.11` is `python`), to spot interpreters."""
    name = program(argv)
    return name if name in SHELLS else name.rstrip("0123456789.")


def _reads_script_from_stdin(argv: list[str]) -> bool:
    """A shell or interpreter that will run what arrives on its standard input."""
    name = _runner(argv)
    if name not in SHELLS and name not in _INTERPRETERS and name not in ("source", "."):
        return False
    if name in ("source", "."):
        return len(argv) > 1 and argv[1] in ("/dev/stdin", "-")
    inline = "c" if name in SHELLS else "cemEr"  # options whose argument is the program itself
    positional: list[str] = []
    for word in argv[1:]:
        if word == "-" or not word.startswith("-"):
            positional.append(word)
        elif not word.startswith("--") and any(letter in word[1:] for letter in inline):
            return False
        elif word == "-s" and name in SHELLS:
            return True
    return not positional or positional[0] in ("-", "/dev/stdin")


def _leaves_goal_branch(argv: list[str], goal_branch: str | None) -> str | None:
    """Why a `git checkout`/`git switch` leaves the goal branch, or None when it stays on it."""
    if program(argv) != "git" or len(argv) < 2 or argv[1] not in ("checkout", "switch"):
        return None
    words = argv[2:]
    if argv[1] == "checkout" and "--" in words:
        return None  # `git checkout [<commit>] -- <paths>` restores files; the branch stays
    creating = {"-b", "-B", "-c", "-C", "--orphan", "--detach", "-d", "--create", "--force-create"}
    options = [word for word in words if word.startswith("-") and word != "-"]
    targets = [word for word in words if not word.startswith("-") or word == "-"]  # `-`: the previous branch
    stay = "the goal's work stays on its branch"
    restore = "; to restore files use `git checkout -- <path>` or `git restore <path>`"
    if any(option.split("=")[0] in creating for option in options):
        return f"it would create or detach onto another branch; {stay}{restore}"
    if not targets or targets[0] in (".", "HEAD") or (goal_branch is not None and targets[0] == goal_branch):
        return None
    if goal_branch is None:
        return f"this goal has no branch of its own, so it stays on the branch it started on{restore}"
    return f"it would leave the goal branch `{goal_branch}`; {stay}{restore}"


def _is_read_only(part: SimpleCommand) -> bool:
    """On the built-in read-only list, with no output redirected to a file and no unsafe option."""
    if part.writes_file or part.substitutes_download or not part.argv:
        return False
    if any(word.startswith(_UNSAFE_OPTIONS) for word in part.argv[1:]):
        return False
    name = program(part.argv)
    if name == "git":
        return len(part.argv) > 1 and part.argv[1] in READ_ONLY_GIT
    return name in READ_ONLY_PROGRAMS


def command_prefix(command: str) -> str:
    """The rule glob a remembered approval of `command` covers: a prefix of its first simple command.

    - Words before the program (`VAR=x`, `sudo`, `env`, `timeout 5`, …) are kept as written, because
      allow rules match the command as written.
    - Programs with subcommands (`SUBCOMMAND_TOOLS`) keep the words up to their subcommand:
      `npm test -- --watch` → `npm test*`, `git -C repo commit -m x` → `git -C repo commit*`. When an
      option that is not one of git's global options comes first, or there is no subcommand, the glob is
      the command exactly (`npm --prefix web test`, `make`): an option's value is no subcommand, and a
      bare `make*` would cover every target.
    - Shells and interpreters keep the words up to their script or module: `python -m pytest -q` →
      `python -m pytest*`, `node build.js` → `node build.js*` (with no script, exactly the command); the
      program alone would allow anything.
    - Any other program is covered whole: `pytest -q tests/x.py` → `pytest*`, `rm -r build` → `rm*`.

    Glob characters in the kept words are matched literally. "" for an empty command. Guarded and denied
    commands (`rm -rf /`, `curl … | sh`, `git push`, leaving the goal branch) are never asked about, so
    no approval of them can be remembered; and a remembered glob only turns an ask into an allow.
    """
    parts = split_command(command)
    return _prefix_glob(parts[0].argv) if parts else ""


@dataclass(frozen=True)
class AskedCommand:
    """One simple command that the rules ask about."""

    command: str
    """As written (quotes removed)."""
    rememberable: bool
    """False when the guards or the default rules would deny it and only a user's ask rule made it an ask
    (a `git push`, leaving the goal branch): it may be approved once, never remembered."""


def asked_commands(command: str, rules: Sequence[Rule], policy: ApprovalPolicy,
                   goal_branch: str | None) -> list[AskedCommand]:
    """The simple commands of `command` that the rules and the policy would ask about."""
    return [AskedCommand(" ".join(part.argv), _judge(part, (), "on-request", goal_branch).action != "deny")
            for part in split_command(command) if _judge(part, rules, policy, goal_branch).action == "ask"]


def _prefix_glob(argv: tuple[str, ...]) -> str:
    """`command_prefix` for one simple command's words."""
    core = core_argv(argv)
    start = next((i for i in range(len(argv)) if program(argv[i:i + 1]) == (core[0] if core else None)
                  and core_argv(argv[i:]) == core), None)
    if start is None:
        return _literal(argv)  # nothing but wrappers: exactly this
    name, rest = _runner(core), argv[start + 1:]
    if name not in SUBCOMMAND_TOOLS and name not in SHELLS and name not in _INTERPRETERS:
        return _literal(argv[:start + 1]) + "*"
    if name == "git":
        # git's global options (`-C repo`, `-c k=v`) stand before the subcommand core_argv found.
        subcommand: int | None = rest.index(core[1]) if len(core) > 1 else None
    elif name in SUBCOMMAND_TOOLS:
        subcommand = 0 if rest and not rest[0].startswith("-") else None
    else:  # a shell or interpreter: up to its script or module (`-m pytest`, `-c CODE`)
        subcommand = next((i for i, word in enumerate(rest) if not word.startswith("-")), None)
    if subcommand is None:
        return _literal(argv)  # no subcommand: exactly this command
    return _literal(argv[:start + 2 + subcommand]) + "*"


def _literal(words: Sequence[str]) -> str:
    """Words joined as a rule glob that matches them literally (`*`, `?` and `[` escaped as classes)."""
    text = " ".join(words)
    return "".join(f"[{char}]" if char in "*?[" else char for char in text)
