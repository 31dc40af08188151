"""The `gk` command group, building only the command that runs.

Typer turns every registered command into a click command (each parameter's annotations read and converted)
before it looks at the arguments: about 30–50 ms of a 240 ms `gk status`, spent on 22 commands to run one.
`lazy_group(catalogue, outlines)` is a Typer group class whose commands are the catalogue's, built by typer's
own `get_command_from_info` the first time one is looked up. The catalogue itself (cli/app.py, with every
command body's imports) is loaded only then: `gk --help` lists the commands from `outlines`, each name's help
line as typer would take it from the command (tests/test_startup.py checks the two agree).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from gettext import gettext
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_command_name, get_group_from_info

if TYPE_CHECKING:
    from typer import _click as click  # typer 0.29 bundles its own click; its types are named here only


class Commands(MutableMapping[str, "click.Command"]):
    """The catalogue's commands by name, in the order the outlines list them, each built on first use; the
    catalogue is loaded when a command is first looked up, never for a listing."""

    def __init__(self, catalogue: Callable[[], typer.Typer], outlines: Mapping[str, str],
                 rich_markup_mode: Any, alone: Mapping[str, Callable[[], typer.Typer]] | None = None) -> None:
        self._catalogue = catalogue
        self._alone = dict(alone or {})
        self._outlines = dict(outlines)
        self._rich_markup_mode = rich_markup_mode
        self._built: dict[str, click.Command] = {}
        self._builders: dict[str, Callable[[], click.Command]] | None = None

    def _load(self) -> dict[str, Callable[[], click.Command]]:
        """Each registered command's builder by name (the catalogue's import happens here, once). A command with
        a catalogue of its own takes the place its outline has among the others."""
        if self._builders is None:
            builders = self._builders_of(self._catalogue())
            for name, alone in self._alone.items():
                before = list(self._outlines)[:list(self._outlines).index(name)] if name in self._outlines else []
                at = max((index + 1 for index, other in enumerate(builders) if other in before), default=0)
                items = list(builders.items())
                builders = dict([*items[:at], *self._builders_of(alone()).items(), *items[at:]])
            self._builders = builders
        return self._builders

    def _builders_of(self, catalogue: typer.Typer) -> dict[str, Callable[[], click.Command]]:
        markup = self._rich_markup_mode
        builders: dict[str, Callable[[], click.Command]] = {}
        for info in catalogue.registered_commands:
            name = info.name or get_command_name(info.callback.__name__)  # type: ignore[union-attr]
            builders[name] = lambda info=info: get_command_from_info(  # type: ignore[misc]
                info, pretty_exceptions_short=catalogue.pretty_exceptions_short, rich_markup_mode=markup)
        for group_info in catalogue.registered_groups:  # a sub-app (`gk local`) is a small group
            group = get_group_from_info(group_info, pretty_exceptions_short=catalogue.pretty_exceptions_short,
                                        suggest_commands=catalogue.suggest_commands, rich_markup_mode=markup)
            builders[group.name or ""] = lambda group=group: group  # type: ignore[misc]
        return builders

    def loaded(self) -> bool:
        """Whether the catalogue has been loaded (a listing loads nothing)."""
        return self._builders is not None

    def outline(self, name: str) -> click.Command:
        """What `gk --help` lists for `name`: its help line from the outlines, with no parameters."""
        if name in self._built or name not in self._outlines:
            return self[name]
        return TyperCommand(name=name, help=self._outlines[name])

    def built(self, name: str) -> bool:
        """Whether `name`'s command has been built (a listing builds none)."""
        return name in self._built

    def registered(self) -> list[str]:
        """Every command the catalogue registers, in its order (this loads the catalogue)."""
        return list(self._load())

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            if name in self._alone and self._builders is None:  # its own catalogue: the others stay unloaded
                self._built[name] = self._builders_of(self._alone[name]())[name]()
            else:
                self._built[name] = self._load()[name]()
        return self._built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._built[name] = command
        self._load().setdefault(name, lambda: command)

    def __delitem__(self, name: str) -> None:
        del self._load()[name]
        self._built.pop(name, None)
        self._outlines.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        extra = [name for name in self._builders or () if name not in self._outlines]
        return iter([*self._outlines, *extra])

    def __len__(self) -> int:
        return len(list(iter(self)))


def lazy_group(catalogue: Callable[[], typer.Typer], outlines: Mapping[str, str],
               alone: Mapping[str, Callable[[], typer.Typer]] | None = None) -> type[TyperGroup]:
    """A group class for `typer.Typer(cls=...)` whose commands are those `catalogue()` registers, loaded and
    built when one is looked up; `outlines` gives each command's help line for the listing. A name in `alone`
    has a catalogue of its own, loaded without the main one when that command runs (`gk exec`, whose first
    milliseconds start the goal's checks). Commands go on a catalogue: one registered on the group's own Typer
    would be built on every call."""

    class LazyGroup(TyperGroup):
        def __init__(self, **attrs: Any) -> None:
            if attrs.get("commands"):
                raise TypeError(f"register commands on the catalogue, not on the root: {list(attrs['commands'])}")
            super().__init__(**attrs)
            self.commands = Commands(catalogue, outlines, self.rich_markup_mode, alone)

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
