"""Flags that several commands share, declared once and received as one value.

A group is a frozen dataclass whose fields are typer options (``Annotated`` with their
defaults), e.g. the endpoint's five flags. A command takes ``endpoint: EndpointFlags``;
:func:`flag_groups` shows typer the group's fields as ordinary options in that place, and
calls the command with one dataclass built from them. So each flag is written once, whichever
commands take it, and the code that turns the flags into a core value (an ``Endpoint``, the
upload options) is the group's method, not repeated per command.
"""

from __future__ import annotations

import dataclasses
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
