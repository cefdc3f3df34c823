"""What a user installs, and what the README's install and the examples tell them to run.

No server, no install: the texts themselves. tests/test_wheel.py builds and installs the wheel
and runs the examples' commands with it.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# "persevere" on PyPI is another project ("The Perseverance Composition Engine").
DISTRIBUTION = "persevere-s3"


def _documents() -> list[Path]:
    """The README and every file under examples/: what a user copies commands from."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "examples").rglob("*") if p.is_file())]


def _pip_install_arguments(text: str) -> list[str]:
    """The words after each `pip install` in ``text``, up to the end of its command."""
    words: list[str] = []
    for match in re.finditer(r"\bpip3?\s+install\b([^\n;&|#`]*)", text):
        words += match.group(1).split()
    return words


def _the_other_project(text: str) -> list[str]:
    """The requirements in ``text``'s pip install commands that name PyPI's "persevere"."""
    pattern = r"['\"]?persevere(\[[^\]]*\])?([<>=!~].*)?['\"]?"
    return [w for w in _pip_install_arguments(text) if re.fullmatch(pattern, w)]


def test_the_distribution_is_not_named_after_another_project():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert project["scripts"] == {"persevere": "persevere._cli:main"}  # the command keeps its name


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_install_command_installs_the_other_project(document):
    """`pip install persevere` installs someone else's package: no document may say it."""
    other = _the_other_project(document.read_text(errors="replace"))
    assert other == [], f"{document.name}: pip install {other}"


def test_the_kubernetes_examples_install_this_project():
    for job in sorted((ROOT / "examples" / "kubernetes").glob("*.yaml")):
        assert DISTRIBUTION in _pip_install_arguments(job.read_text()), job.name


def test_the_check_finds_the_other_project():
    """The check above can fail: each form a document could use is caught, ours is not."""
    for line in (
        "pip install persevere",
        "pip install --quiet persevere && exec x",
        "python -m pip install 'persevere>=0.1'",
        "pip3 install -U persevere[x]",
    ):
        assert _the_other_project(line), line
    assert _the_other_project("pip install persevere-s3 && persevere --version") == []


def test_make_demo_installs_the_demo_extra_not_the_dev_tools(tmp_path):
    """A first `make demo` installed the whole dev extra (dask, moto, awscli...: 960 MB)."""
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "demo", f"VENV={tmp_path / 'venv'}"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    installs = [line for line in dry.stdout.splitlines() if "pip install" in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install -e '.[demo]'"], dry.stdout
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras["demo"]) <= set(extras["dev"])  # make install serves the demo too
