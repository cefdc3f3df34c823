"""Dump every command's click parameters as JSON: the CLI's surface, to compare before and after.

The one-path reshape (issue 25) moves the CLI into several modules; it must not change a flag.
This prints, for every command and group of ``persevere``, its help and each parameter's name,
kind, flags (``opts``, ``secondary_opts``), default, environment variable, help, type,
required, multiple, hidden, flag and metavar, parameters sorted by name (so the order help
shows them in does not matter). ``tests/cli_params.json`` is the baseline;
``tests/test_cli_params.py`` compares the two.

    python scripts/dump_click_params.py > tests/cli_params.json   # a new baseline, on purpose
    python scripts/dump_click_params.py --check tests/cli_params.json
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from pathlib import Path
from typing import Any

import click
import typer


def _plain(value: Any) -> Any:
    """A default as JSON: enums by value, paths and other objects as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


# What a parser-function type (``parser=`` in typer) makes of a few values: the function is
# known by what it does, not by its name.
PROBES = ("auto", "8MiB", "8MB", "5", "90s", "2h", "50MB/s", "x")


def _probe(param_type: click.ParamType[Any], text: str) -> Any:
    try:
        return _plain(param_type.convert(text, None, None))
    except click.BadParameter as exc:
        return f"error: {exc.message}"


def _type(param_type: click.ParamType[Any]) -> dict[str, Any]:
    """The type as data: its kind, a choice's choices, a range's bounds, what a parser
    function makes of :data:`PROBES`."""
    info: dict[str, Any] = dict(param_type.to_info_dict())
    if info.pop("func", None) is not None:
        info["name"] = "parser"
        info["probes"] = {text: _probe(param_type, text) for text in PROBES}
    if "choices" in info:
        info["choices"] = [_plain(c) for c in info["choices"]]
    if "types" in info:  # a tuple type
        info["types"] = [_type(t) for t in getattr(param_type, "types", [])]
    return {k: v if k in ("types", "probes") else _plain(v) for k, v in sorted(info.items())}


def _param(param: click.Parameter) -> dict[str, Any]:
    option = isinstance(param, click.Option)
    return {
        "name": param.name,
        "kind": param.param_type_name,
        "opts": list(param.opts),
        "secondary_opts": list(param.secondary_opts),
        "default": _plain(param.default),
        "envvar": param.envvar,
        "help": getattr(param, "help", None),
        "type": _type(param.type),
        "required": param.required,
        "multiple": param.multiple,
        "nargs": param.nargs,
        "hidden": getattr(param, "hidden", False),
        "is_flag": option and getattr(param, "is_flag", False),
        "count": option and getattr(param, "count", False),
        "metavar": param.metavar,
    }


def _commands(command: click.Command, path: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        path: {
            "help": command.help,
            "hidden": command.hidden,
            "params": sorted((_param(p) for p in command.params), key=lambda p: str(p["name"])),
        }
    }
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found.update(_commands(sub, f"{path} {name}"))
    return found


def dump() -> dict[str, Any]:
    from persevere._cli import app

    return _commands(typer.main.get_command(app), "persevere")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, metavar="BASELINE", help="compare with a dump")
    args = parser.parse_args(argv)
    now = dump()
    if args.check is None:
        print(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before = json.loads(args.check.read_text(encoding="utf-8"))
    differ = []
    for command in sorted({*before, *now}):
        if before.get(command) != now.get(command):
            how = "added" if command not in before else "gone" if command not in now else "changed"
            differ.append(f"{command}: {how}")
    for line in differ:
        print(line, file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
