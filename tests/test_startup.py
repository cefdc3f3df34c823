"""Start-up: what a command imports, the S3 model loader and the collector pause around
client creation.

The import budget counts modules, not milliseconds (timing is noise on a shared machine): a
small upload pays for what it imports, so the modules only other commands use (verify, bench,
shards, the blocking API, tqdm when no bar can be drawn) must stay out of its process.
"""

from __future__ import annotations

import gc
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from botocore.loaders import Loader

from persevere import _botocore_loader, _s3
from persevere._botocore_loader import s3_loader
from tests.conftest import MakeFile

# Modules an upload must not import: other commands' code and what only they use.
NOT_FOR_AN_UPLOAD = (
    "persevere._verify",
    "persevere._bench",
    "persevere._sync",
    "persevere._shards",
    "persevere._processes",
    "persevere._orphans",
    "persevere._dry_run",
    "dask",
    "tqdm",
    "multiprocessing",
)
# persevere's own modules a 0-byte ``cp`` imports (45 when this was written): room for one or
# two more small modules, not for a command's worth.
PERSEVERE_MODULES_BUDGET = 48

# Runs the CLI as ``python -m persevere`` does, and prints the modules loaded once it is done.
_RUN_AND_LIST = """
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.__stdout__))
sys.argv = ["persevere", *sys.argv[1:]]
runpy.run_module("persevere", run_name="__main__")
"""


def _loaded(code: str, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _unwanted(modules: set[str]) -> list[str]:
    return sorted(
        name
        for name in modules
        if any(name == bad or name.startswith(bad + ".") for bad in NOT_FOR_AN_UPLOAD)
    )


@pytest.mark.process
def test_importing_the_cli_imports_no_other_commands_code() -> None:
    modules = _loaded("import json, sys, persevere._cli; print(json.dumps(sorted(sys.modules)))")
    assert _unwanted(modules) == []
    assert "persevere._s3" not in modules  # botocore and aiohttp come when a client does


@pytest.mark.process
def test_the_package_exports_its_api_without_importing_it() -> None:
    modules = _loaded("import json, sys, persevere; print(json.dumps(sorted(sys.modules)))")
    assert sorted(name for name in modules if name.startswith("persevere.")) == [
        "persevere._errors",
        "persevere._version",
    ]


@pytest.mark.process
def test_a_small_upload_imports_only_what_it_uses(
    s3_env: dict[str, str], bucket: str, make_file: MakeFile, tmp_path: Path
) -> None:
    source = make_file(0, name="empty")
    modules = _loaded(
        _RUN_AND_LIST, "cp", str(source), f"s3://{bucket}/zero",
        "--state-file", str(tmp_path / "state"),
    )  # fmt: skip
    assert "persevere._upload" in modules and "aiobotocore.session" in modules  # it did upload
    assert _unwanted(modules) == []
    own = sorted(name for name in modules if name.startswith("persevere."))
    assert len(own) <= PERSEVERE_MODULES_BUDGET, own


@pytest.mark.process
def test_the_cli_keeps_the_parsed_s3_model_between_runs(
    s3_env: dict[str, str],
    bucket: str,
    make_file: MakeFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = make_file(0, name="empty")

    def upload(key: str) -> dict[str, int]:
        modules = _loaded(
            _RUN_AND_LIST, "cp", str(source), f"s3://{bucket}/{key}",
            "--state-file", str(tmp_path / key),
        )  # fmt: skip
        assert "persevere._upload" in modules
        return {path.name: path.stat().st_mtime_ns for path in kept_dir.iterdir()}

    kept_dir = tmp_path / "cache" / "persevere" / "botocore"
    first = upload("first")
    assert len(first) >= 3  # the S3 model, its endpoint rules, endpoints.json
    assert upload("second") == first  # read back, not parsed and written again


# Runs the CLI as above, and prints what aiohttp's default TLS contexts hold once it is done.
_RUN_AND_COUNT_CAS = """
import atexit, json, os, runpy, sys
def report():
    from aiohttp import connector
    defaults = (connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED)
    print(json.dumps({"cas": [context.cert_store_stats()["x509_ca"] for context in defaults],
                      "SSL_CERT_FILE": os.environ.get("SSL_CERT_FILE")}), file=sys.__stdout__)
atexit.register(report)
sys.argv = ["persevere", *sys.argv[1:]]
runpy.run_module("persevere", run_name="__main__")
"""


@pytest.mark.process
@pytest.mark.parametrize("cert_file", [None, ssl.get_default_verify_paths().openssl_cafile])
def test_the_cli_does_not_load_the_ca_file_for_aiohttps_unused_defaults(
    s3_env: dict[str, str],
    bucket: str,
    make_file: MakeFile,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cert_file: str | None,
) -> None:
    if cert_file is None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    else:
        monkeypatch.setenv("SSL_CERT_FILE", cert_file)
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_COUNT_CAS, "cp", str(make_file(0, name="empty")),
         f"s3://{bucket}/zero", "--state-file", str(tmp_path / "state")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["cas"] == [0, 0]
    assert seen["SSL_CERT_FILE"] == cert_file  # restored


@pytest.mark.process
def test_a_library_process_gets_aiohttps_defaults_as_they_are() -> None:
    code = (
        "import json, ssl; from persevere._s3 import import_aiohttp; "
        "import_aiohttp(); from aiohttp import connector; print(json.dumps(["
        "connector._SSL_CONTEXT_VERIFIED.cert_store_stats(), "
        "ssl.create_default_context().cert_store_stats()]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    aiohttps, systems = json.loads(done.stdout)
    assert aiohttps == systems


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_loader_gives_botocores_own_s3_model(type_name: str) -> None:
    assert s3_loader(None).load_service_model("s3", type_name) == Loader().load_service_model(
        "s3", type_name
    )


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_loader_keeps_what_it_parsed_and_reads_back_botocores_own_model(
    type_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    botocores = Loader().load_service_model("s3", type_name)
    assert s3_loader(None, str(tmp_path)).load_service_model("s3", type_name) == botocores
    assert list(tmp_path.iterdir())  # kept

    def no_parsing(raw: bytes, gzipped: bool) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(_botocore_loader, "_parse", no_parsing)
    kept = s3_loader(None, str(tmp_path)).load_service_model("s3", type_name)
    assert kept == botocores
    assert json.dumps(kept) == json.dumps(botocores)  # the same order too


def test_a_damaged_kept_document_is_parsed_again(tmp_path: Path) -> None:
    s3_loader(None, str(tmp_path)).load_service_model("s3", "service-2")
    for kept in tmp_path.iterdir():
        data = bytearray(kept.read_bytes())
        data[-1] ^= 1
        kept.write_bytes(data[: len(data) // 2] if kept.stat().st_size > 1000 else data)
    model = s3_loader(None, str(tmp_path)).load_service_model("s3", "service-2")
    assert model == Loader().load_service_model("s3", "service-2")
    assert _botocore_loader._read_kept(str(max(tmp_path.iterdir(), key=os.path.getsize)))


def test_a_cache_directory_that_cannot_be_made_only_means_parsing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    loader = s3_loader(None, str(tmp_path / "file" / "cache"))
    assert loader.load_service_model("s3", "service-2") == Loader().load_service_model(
        "s3", "service-2"
    )


def test_the_clis_cache_directory_is_absolute_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from persevere._cli import _models_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", "/cache")
    assert _models_cache_dir() == "/cache/persevere/botocore"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", "/home/someone")
    assert _models_cache_dir() == "/home/someone/.cache/persevere/botocore"
    monkeypatch.setenv("HOME", "relative")
    assert _models_cache_dir() is None  # never a cache in the current directory


@pytest.mark.slow  # (over 4 s on this machine: make test-all runs it)
def test_loader_leaves_other_services_and_data_to_botocore() -> None:
    loader = s3_loader(None)
    assert loader.load_service_model("sts", "service-2") == Loader().load_service_model(
        "sts", "service-2"
    )
    assert loader.load_data("endpoints") == Loader().load_data("endpoints")


def test_client_pauses_and_restores_the_collector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    seen: dict[str, object] = {}

    async def main() -> None:
        async with _s3.open_client(_s3.Endpoint("http://127.0.0.1:9")) as client:
            seen["enabled"] = gc.isenabled()
            seen["frozen"] = gc.get_freeze_count()
            seen["operations"] = client.meta.service_model.operation_names

    assert gc.isenabled()
    anyio.run(main)
    assert seen["enabled"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 10_000  # botocore's objects
    assert "UploadPart" in seen["operations"]  # type: ignore[operator]
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # a library caller's objects are not left frozen


def test_plain_http_endpoints_load_no_ca_store() -> None:
    assert _s3._verify(_s3.Endpoint("http://127.0.0.1:9")) is False
    assert _s3._verify(_s3.Endpoint("HTTP://s3.local")) is False
    assert _s3._verify(_s3.Endpoint("https://s3.local", ca_bundle="/ca.pem")) == "/ca.pem"
    assert _s3._verify(_s3.Endpoint(None)) is None  # AWS: botocore's default verification


def test_the_clis_collector_pause_ends_when_the_work_starts() -> None:
    from persevere._loop import pause_collector, resume_collector, run

    async def work() -> tuple[bool, int]:
        return gc.isenabled(), gc.get_freeze_count()

    pause_collector()
    try:
        assert not gc.isenabled()
        enabled, frozen = run(work)
    finally:
        resume_collector(freeze=False)
        gc.unfreeze()
    assert enabled and frozen > 0  # start-up's objects frozen, the collector on for the work
    assert gc.isenabled()


def test_the_collector_pause_leaves_a_disabled_collector_alone() -> None:
    from persevere._loop import pause_collector, resume_collector

    gc.disable()
    try:
        pause_collector()
        resume_collector()
        assert not gc.isenabled()  # the caller's choice, not ours to undo
        assert gc.get_freeze_count() == 0
    finally:
        gc.enable()
