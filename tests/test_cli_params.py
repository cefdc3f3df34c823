"""Every command's flags stay as they are: names, defaults, environment variables, help, types
(what a parser makes of sample values), compared with ``tests/cli_params.json``, the dump taken
before the one-path reshape (issue 25) moved the CLI into modules of its own.

A flag added or changed on purpose: ``python scripts/dump_click_params.py >
tests/cli_params.json``, and the diff of that file shows the change in review.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dump_module():
    spec = importlib.util.spec_from_file_location(
        "dump_click_params", ROOT / "scripts" / "dump_click_params.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_keeps_its_flags():
    baseline = json.loads((ROOT / "tests" / "cli_params.json").read_text(encoding="utf-8"))
    now = json.loads(json.dumps(_dump_module().dump()))
    assert sorted(now) == sorted(baseline)
    for command in baseline:
        assert now[command] == baseline[command], command


def test_the_dump_sees_every_flag():
    """The baseline is no empty shell: the commands and a few flags are in it."""
    baseline = json.loads((ROOT / "tests" / "cli_params.json").read_text(encoding="utf-8"))
    flags = {
        command: {opt for param in entry["params"] for opt in param["opts"]}
        for command, entry in baseline.items()
    }
    assert {"--part-size", "--max-parts", "--no-overwrite", "--dry-run"} <= flags[
        "persevere upload start"
    ]
    assert {"--verify-parts", "--processes", "--retry-for"} <= flags["persevere upload resume"]
    assert "--shard" in flags["persevere upload shard"]
    assert "--state-dir" in flags["persevere cp"]
