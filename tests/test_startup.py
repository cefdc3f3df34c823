"""Start-up shortcuts: the S3 model loader and the collector pause around client creation."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import anyio
import pytest
from botocore.loaders import Loader

from persevere import _s3
from persevere._botocore_loader import s3_loader


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1"])
def test_loader_gives_botocores_own_s3_model(type_name: str) -> None:
    assert s3_loader(None).load_service_model("s3", type_name) == Loader().load_service_model(
        "s3", type_name
    )


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
