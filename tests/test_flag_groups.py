"""persevere._flag_groups: a command's flag group is spread into options and packed again."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import click
import pytest
import typer

from persevere._flag_groups import flag_groups


@dataclasses.dataclass(frozen=True)
class Speed:
    rate: Annotated[int, typer.Option("--rate", min=1, help="How fast.")] = 3
    burst: Annotated[bool, typer.Option("--burst", help="All at once.")] = False


def _command(seen: list[object]) -> click.Command:
    app = typer.Typer()

    @app.command()
    @flag_groups
    def go(name: Annotated[str, typer.Argument()], speed: Speed = Speed()) -> None:
        seen.append((name, speed))

    return typer.main.get_command(app)


def test_a_group_is_received_whole_with_its_flags_parsed() -> None:
    seen: list[object] = []
    _command(seen).main(["x", "--rate", "7", "--burst"], standalone_mode=False)
    assert seen == [("x", Speed(rate=7, burst=True))]


def test_a_group_keeps_its_defaults_help_and_checks() -> None:
    seen: list[object] = []
    command = _command(seen)
    command.main(["y"], standalone_mode=False)
    assert seen == [("y", Speed())]
    options = {param.name: param for param in command.params}
    assert options["rate"].opts == ["--rate"] and options["rate"].help == "How fast."  # type: ignore[attr-defined]
    assert options["burst"].default is False and "speed" not in options
    with pytest.raises(click.BadParameter, match="not in the range x>=1"):
        command.main(["z", "--rate", "0"], standalone_mode=False)
    assert len(seen) == 1


@dataclasses.dataclass(frozen=True)
class Trip:
    """A group holding a group, and a field that is no flag (its __init__ does not take it)."""

    where: Annotated[str, typer.Option("--where", help="Where to.")] = "home"
    speed: Speed = Speed()
    late: Annotated[bool, typer.Option("--late", help="After hours.")] = False
    fixed: int = dataclasses.field(default=1, init=False)


def test_a_group_in_a_group_is_spread_in_its_place_and_packed_again() -> None:
    seen: list[object] = []
    app = typer.Typer(add_completion=False)

    @app.command()
    @flag_groups
    def go(trip: Trip = Trip()) -> None:
        seen.append(trip)

    command = typer.main.get_command(app)
    assert [param.name for param in command.params] == ["where", "rate", "burst", "late"]
    command.main(["--rate", "5", "--late"], standalone_mode=False)
    assert seen == [Trip(speed=Speed(rate=5), late=True)]
