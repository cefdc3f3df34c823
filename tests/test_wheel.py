"""The package as it is published: the sdist and the wheel built from this checkout.

CI installs the checkout in editable mode, which hides a wheel that lacks a module, a data file
or an entry point. Here ``python -m build`` makes the sdist and, from it, the wheel (as
``make dist`` does); the wheel goes into a fresh venv (no ``--system-site-packages``, so nothing
of the dev venv leaks in; pip fetches the dependencies from the configured index, from its
cache in practice), and that venv's own ``persevere`` command uploads a file to the local
SeaweedFS. About 20 s, most of it pip installing the dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from persevere import __version__
from tests.conftest import sha256_of_file, sha256_of_object

# Slow (make test-all, CI): builds the sdist and the wheel, installs the wheel into a new venv.
pytestmark = [pytest.mark.slow, pytest.mark.process]

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def _run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=240, **kwargs
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    return out


@pytest.fixture(scope="module")
def wheel_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the built wheel and its dependencies; yields its bin/."""
    home = tmp_path_factory.mktemp("wheel-venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(home / "venv")
    bin_dir = home / "venv" / "bin"
    (wheel,) = dist.glob("persevere-*.whl")
    _run([bin_dir / "python", "-m", "pip", "install", "--quiet", wheel])
    return bin_dir


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without anything that could import the checkout instead."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_sdist_and_wheel_ship_the_license(dist):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    license_text = (ROOT / "LICENSE").read_text()
    assert declared == "MIT"
    assert license_text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the persevere authors" in license_text

    (sdist,) = dist.glob("persevere-*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/LICENSE")
        assert member is not None
        assert member.read().decode() == license_text

    (wheel,) = dist.glob("persevere-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        info = f"persevere-{__version__}.dist-info"
        assert whl.read(f"{info}/licenses/LICENSE").decode() == license_text
        metadata = whl.read(f"{info}/METADATA").decode()
        names = whl.namelist()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "persevere/py.typed" in names  # the package stays typed once installed
    assert not any(name.startswith("tests/") for name in names)
    # The package directory ships as a whole: a merge's leftover (_cli.py.orig) would go too.
    package = [n for n in names if n.startswith("persevere/")]
    assert [n for n in package if not n.endswith((".py", "/py.typed"))] == []


@pytest.mark.process
def test_installed_wheel_runs_and_uploads(
    wheel_venv, s3_env, bucket, s3_client, make_file, tmp_path
):
    env = _clean_env(s3_env)
    where = _run(
        [wheel_venv / "python", "-c", "import persevere; print(persevere.__file__)"],
        env=env,
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(wheel_venv.parent), where.stdout

    persevere = wheel_venv / "persevere"
    version = _run([persevere, "--version"], env=env, cwd=tmp_path)
    assert version.stdout.strip() == f"persevere {__version__}"
    usage = _run([persevere, "--help"], env=env, cwd=tmp_path)
    assert "upload" in usage.stdout and "verify" in usage.stdout

    file = make_file(6 * MiB + 3)
    state = tmp_path / "wheel.persevere"
    upload = _run(
        [persevere, "upload", "start", file, f"s3://{bucket}/from-wheel",
         "--part-size", "5MiB", "--state-file", state, "--no-progress"],
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert f"uploaded s3://{bucket}/from-wheel" in upload.stdout
    assert "Traceback" not in upload.stderr
    assert sha256_of_object(s3_client, bucket, "from-wheel") == sha256_of_file(file)
    assert state.read_text().splitlines()[-1].startswith('{"type":"completed"')
