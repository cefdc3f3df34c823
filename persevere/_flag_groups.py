"""Flags that several commands share, declared once and received as one value.

A group is a frozen dataclass whose fields are typer options (``Annotated`` with their
defaults), e.g. the endpoint's five flags. A command takes ``endpoint: EndpointFlags``;
:func:`flag_groups` shows typer the group's fields as ordinary options in that place, and
calls the command with one dataclass built from them. So each flag is written once, whichever
commands take it, and the code that turns the flags into a core value (an ``Endpoint``, the
upload options) is the group's method, not repeated per command. A group's field may be a
group in turn (start's and cp's flags hold the transfer, endpoint and object groups); a field
its ``__init__`` does not take is no flag (resume's endpoint group has no ``--region``).
A path (an argument or a flag) given as ``""`` is refused (:class:`_NamedPath`), never read
as the working directory. ``._cli`` applies :func:`flag_groups` to every command as it
registers it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click

T = TypeVar("T")


# A group as :func:`flag_groups` packs it (a command too, called as a group is made): its
# class, and each field's name with the layout of the group it holds (None: an option).
_Layout = tuple[Callable[..., Any], list[tuple[str, "_Layout | None"]]]


def _spread(group: Callable[..., Any]) -> tuple[list[inspect.Parameter], _Layout]:
    """The options of ``group``'s parameters (a group's: its ``__init__``'s), a group among
    them spread in turn in its place, and the group's layout."""
    hints = typing.get_type_hints(group, include_extras=True)
    params: list[inspect.Parameter] = []
    fields: list[tuple[str, _Layout | None]] = []
    for param in inspect.signature(group).parameters.values():
        hint, inner = hints[param.name], None
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            options, inner = _spread(hint)
            params += options
        else:
            keyword = inspect.Parameter.KEYWORD_ONLY
            params.append(param.replace(annotation=_named(hint), kind=keyword))
        fields.append((param.name, inner))
    return params, (group, fields)


class _NamedPath(str):
    """A path's text as click hands it to pathlib, ``""`` refused: ``Path("")`` is ``.``, so
    ``persevere cp "$FILE" s3://B/P/`` with FILE unset uploaded the working directory."""

    def __new__(cls, text: str) -> _NamedPath:
        if not text:
            raise click.BadParameter(
                "an empty path names nothing (an unset shell variable?): give the path ('.' "
                "for the working directory)"
            )
        return super().__new__(cls, text)


def _named(hint: Any) -> Any:
    """``hint``, if a path's option or argument (``Annotated[Path | None, typer.Option(...)]``),
    with its text taken as :class:`_NamedPath`."""
    if typing.get_origin(hint) is not Annotated:
        return hint
    kind, info, *more = typing.get_args(hint)
    if Path not in (kind, *typing.get_args(kind)) or getattr(info, "path_type", 0) is not None:
        return hint
    info = copy.copy(info)
    info.path_type = _NamedPath
    return Annotated[kind, info, *more]


def _pack(layout: _Layout, values: dict[str, Any]) -> Any:
    """The group of ``layout`` (or the command), its options' values taken out of ``values``."""
    group, fields = layout
    return group(**{name: values.pop(name) if inner is None else _pack(inner, values)
                    for name, inner in fields})  # fmt: skip


def flag_groups(command: Callable[..., T]) -> Callable[..., T]:
    """``command`` with each parameter typed by a flag group spread into the group's fields (a
    field the group's ``__init__`` does not take is none)."""
    params, layout = _spread(command)

    @functools.wraps(command)
    def spread(**values: Any) -> T:
        return _pack(layout, values)  # type: ignore[no-any-return]

    spread.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    spread.__annotations__ = {param.name: param.annotation for param in params}
    return spread
