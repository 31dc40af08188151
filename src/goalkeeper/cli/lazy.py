"""The `gk` command group, building only the command that runs.

Typer turns every registered command into a click command (each parameter's annotations read and converted)
before it looks at the arguments: about 30–50 ms of a 240 ms `gk status`, spent on 22 commands to run one.
`lazy_group(catalogue)` is a Typer group class whose commands are the catalogue's, built by typer's own
`get_command_from_info` the first time one is looked up; `gk --help` lists them from their docstrings, which
is where typer takes a command's help from (tests/test_cli.py checks the two agree).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, MutableMapping
from gettext import gettext
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group_from_info
from typer.models import CommandInfo

if TYPE_CHECKING:
    from typer import _click as click  # typer 0.29 bundles its own click; its types are named here only


class Commands(MutableMapping[str, "click.Command"]):
    """The catalogue's commands by name, in the order they were registered, each built on first use."""

    def __init__(self, catalogue: typer.Typer, rich_markup_mode: Any) -> None:
        self._built: dict[str, click.Command] = {}
        self._infos: dict[str, CommandInfo] = {}
        self._builders: dict[str, Callable[[], click.Command]] = {}
        for info in catalogue.registered_commands:
            name = info.name or get_command_name(info.callback.__name__)  # type: ignore[union-attr]
            self._infos[name] = info
            self._builders[name] = lambda info=info: get_command_from_info(  # type: ignore[misc]
                info, pretty_exceptions_short=catalogue.pretty_exceptions_short, rich_markup_mode=rich_markup_mode)
        for group_info in catalogue.registered_groups:  # a sub-app (`gk local`) is a small group: built at once
            group = get_group_from_info(group_info, pretty_exceptions_short=catalogue.pretty_exceptions_short,
                                        suggest_commands=catalogue.suggest_commands, rich_markup_mode=rich_markup_mode)
            self[group.name or ""] = group

    def outline(self, name: str) -> click.Command:
        """What `gk --help` lists for `name`: its help line, taken where typer takes it, with no parameters."""
        info = self._infos.get(name)
        if info is None or name in self._built:
            return self[name]
        text = inspect.getdoc(info.callback) if info.help is None else inspect.cleandoc(info.help)
        return TyperCommand(name=name, help=text, short_help=info.short_help, hidden=info.hidden,
                             deprecated=info.deprecated)

    def built(self, name: str) -> bool:
        """Whether `name`'s command has been built (a listing builds none)."""
        return name in self._built

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._built[name] = command
        self._builders.setdefault(name, lambda: command)

    def __delitem__(self, name: str) -> None:
        del self._builders[name]
        self._built.pop(name, None)
        self._infos.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


def lazy_group(catalogue: typer.Typer) -> type[TyperGroup]:
    """A group class for `typer.Typer(cls=...)` whose commands are `catalogue`'s, each built when looked up.
    Commands go on the catalogue: one registered on the group's own Typer would be built on every call."""

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            if attrs.get("commands"):
                raise TypeError(f"register commands on the catalogue, not on the root: {list(attrs['commands'])}")
            super().__init__(**attrs)
            self.commands = Commands(catalogue, self.rich_markup_mode)

        def list_commands(self, ctx: click.Context) -> list[str]:
            return list(self.commands)  # TyperGroup's reads `.items()`, which would build every command

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            """TyperGroup's listing, from each command's outline rather than the built command."""
            commands = self.commands
            assert isinstance(commands, Commands)
            rows = [(name, command) for name in self.list_commands(ctx)
                    if not (command := commands.outline(name)).hidden]
            if rows:
                limit = formatter.width - 6 - max(len(name) for name, _ in rows)
                with formatter.section(gettext("Commands")):
                    formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    return LazyGroup
