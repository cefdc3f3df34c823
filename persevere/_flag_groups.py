"""Flags that several commands share, declared once and received as one value.

A group is a frozen dataclass whose fields are typer options (``Annotated`` with their
defaults), e.g. the endpoint's five flags. A command takes ``endpoint: EndpointFlags``;
:func:`flag_groups` shows typer the group's fields as ordinary options in that place, and
calls the command with one dataclass built from them. So each flag is written once, whichever
commands take it, and the code that turns the flags into a core value (an ``Endpoint``, the
upload options) is the group's method, not repeated per command. :func:`flag_argv` goes the
other way: the command line that gives a group back, for a command that runs another
(``--processes`` runs ``upload shard``), so none of the group's flags can be left behind.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def flag_groups(command: Callable[..., T]) -> Callable[..., T]:
    """``command`` with each parameter typed by a flag group spread into the group's fields."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[Any], list[str]]] = {}
    for param in inspect.signature(command).parameters.values():
        hint = hints[param.name]
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            params.append(param.replace(annotation=hint, kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        fields = dataclasses.fields(hint)
        field_hints = typing.get_type_hints(hint, include_extras=True)
        groups[param.name] = (hint, [field.name for field in fields])
        params += [
            inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                              default=field.default, annotation=field_hints[field.name])
            for field in fields
        ]  # fmt: skip

    @functools.wraps(command)
    def spread(**values: Any) -> T:
        for name, (group, names) in groups.items():
            values[name] = group(**{field: values.pop(field) for field in names})
        return command(**values)

    spread.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    spread.__annotations__ = {param.name: param.annotation for param in params}
    return spread


def flag_argv(group: Any) -> list[str]:
    """The command line that a command taking ``group``'s class parses back into ``group``:
    every field's long flag and value, from the same declarations that parse them (a field
    added to the group later is passed on too). A flag that is off, or a value that is None
    (not given), is left out: the other command then takes its default, as this one did.
    """
    hints = typing.get_type_hints(type(group), include_extras=True)
    argv: list[str] = []
    for field in dataclasses.fields(group):
        flag = _long_flag(field.name, hints[field.name])
        value = getattr(group, field.name)
        if value is None or value is False:
            if field.default is True:
                raise TypeError(f"{flag}: no flag turns it off")
            continue
        if value is True:
            argv.append(flag)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            argv += [flag, _text(item)]
    return argv


def _long_flag(name: str, hint: Any) -> str:
    """The field's first ``--long`` flag, as typer reads it from ``Annotated[..., Option(...)]``
    (the first name may sit in the option's default); typer's own name if none is given."""
    for meta in typing.get_args(hint)[1:]:
        decls = list(getattr(meta, "param_decls", None) or ())
        default = getattr(meta, "default", None)
        if isinstance(default, str) and default.startswith("-"):
            decls.insert(0, default)
        for decl in decls:
            if decl.startswith("--"):
                return str(decl.split("/")[0])
    return "--" + name.replace("_", "-")


def _text(value: Any) -> str:
    """A value as its flag's parser reads it back (``60.0`` seconds as ``60``)."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
