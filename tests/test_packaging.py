"""What a user installs, what the README and the examples tell them to run, and what a test
run leaves on disk.

Quick checks: the texts themselves, `make -n`, pytest's configuration on a probe, one start of
the test server. tests/test_wheel.py builds and installs the wheel the README's way and runs the
examples' commands with it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.s3server import S3Server

ROOT = Path(__file__).resolve().parent.parent
# "persevere" on PyPI is another project ("The Perseverance Composition Engine").
DISTRIBUTION = "persevere-s3"
# Where the README's install puts the venv, and where the examples run the command from.
PREFIX = "/opt/persevere"


def readme_install() -> list[str]:
    """The commands of the README's Install section (its first sh block), comments dropped."""
    section = (ROOT / "README.md").read_text().split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [command for command in commands if command]


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


@pytest.mark.parametrize("job", ["upload-job.yaml", "shards-indexed-job.yaml"])
def test_the_kubernetes_jobs_install_as_the_readme_does(job):
    """The container's install is the README's (PyPI's persevere-s3 into PREFIX), and the
    command it then runs is PREFIX's (tests/test_wheel.py runs upload-job's)."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    [container] = yaml.safe_load((ROOT / "examples" / "kubernetes" / job).read_text())["spec"][
        "template"
    ]["spec"]["containers"]
    install, command = container["args"][0].split(" && exec ")
    # (an install that fails exits 75, "try again": pip's 1 would fail a Job for good)
    assert install == (
        f"{{ python3 -m venv {PREFIX} && {PREFIX}/bin/pip install --quiet persevere-s3 "
        "|| exit 75; }"
    )
    assert {f"python3 -m venv {PREFIX}", f"{PREFIX}/bin/pip install persevere-s3"} <= set(
        readme_install()
    )
    assert shlex.split(command)[0] == f"{PREFIX}/bin/persevere"


def test_the_slurm_script_runs_the_installed_command():
    """Slurm is not here to run it: its command is the README's install's, by its full path."""
    script = (ROOT / "examples" / "slurm" / "upload-array.sh").read_text()
    [command] = [line for line in script.replace("\\\n", " ").splitlines() if line[:5] == "exec "]
    assert shlex.split(command)[1] == f"{PREFIX}/bin/persevere"


def _make_dry_run(target: str, venv: Path) -> list[str]:
    """What `make -n TARGET` would run, as a fresh checkout's first make would (no make above
    us passing its flags and variables down: `make test` runs this file too)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                         check=True)  # fmt: skip
    return dry.stdout.splitlines()


@pytest.mark.process
def test_make_demo_installs_the_demo_extra_not_the_dev_tools(tmp_path):
    """A first `make demo` installed the whole dev extra (dask, moto, awscli...: 960 MB)."""
    lines = _make_dry_run("demo", tmp_path / "venv")
    installs = [line for line in lines if "pip install" in line]
    assert installs == [f"{tmp_path / 'venv'}/bin/python -m pip install -e '.[demo]'"], lines
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras["demo"]) <= set(extras["dev"])  # make install serves the demo too


# -- what a passing run leaves behind (a passing `make test-all` left 7.9 GB in /tmp) -----------
_PROBE = """
def test_passes(tmp_path):
    (tmp_path / "big.bin").write_bytes(bytes(1 << 20))


def test_fails(tmp_path):
    (tmp_path / "kept.bin").write_bytes(b"look at me")
    assert False
"""


@pytest.mark.process
def test_a_passing_tests_files_are_deleted_a_failing_ones_kept(tmp_path):
    """The project's pytest configuration, on a test that passes and one that fails."""
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "test_probe.py").write_text(_PROBE)
    basetemp = tmp_path / "basetemp"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", ROOT / "pyproject.toml", "--rootdir", tmp_path,
         "-p", "no:cacheprovider", f"--basetemp={basetemp}", tmp_path / "probe"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and "1 failed, 1 passed" in run.stdout, run.stdout
    left = sorted(str(p.relative_to(basetemp)) for p in basetemp.rglob("*") if p.is_file())
    assert left == ["test_fails0/kept.bin"], left


@pytest.mark.process
def test_make_test_deletes_the_sessions_directory_once_all_passed(tmp_path):
    """The session's directories (the server's data, the wheel's venv) are not a test's
    tmp_path: the Makefile deletes --basetemp after pytest, which make runs only if it passed."""
    for target in ("test", "test-all"):
        lines = _make_dry_run(target, tmp_path / "v")
        [pytest_at] = [i for i, line in enumerate(lines) if "/bin/pytest " in line]
        basetemp = re.search(r"--basetemp=(\S+)", lines[pytest_at])
        assert basetemp and basetemp[1].startswith("/tmp/persevere-pytest-"), lines[pytest_at]
        assert lines[pytest_at + 1 :] == [f"rm -rf {basetemp[1]}"], lines


@pytest.mark.slow  # (over 3 s on this machine: make test-all runs it)
@pytest.mark.process
def test_the_test_server_writes_nothing_outside_its_directory(tmp_path, monkeypatch):
    """weed wrote log files of its own (weed.*) into the temp dir at each start."""
    temp = tmp_path / "temp"  # where weed's Go runtime looks: $TMPDIR
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    with S3Server(tmp_path / "server") as server:
        assert server.running
    assert sorted(p.name for p in temp.iterdir()) == []
    assert "weed" in server.log_path.read_text()  # its log is in the server's directory
