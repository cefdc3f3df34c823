"""botocore's data loader, minus start-up work an S3-only client does not need.

Creating an S3 client loads three JSON documents (the S3 service model, its endpoint rule set
and ``endpoints.json``, together about 3.5 MB of JSON). Measured on the bench machine, botocore
spends about twice as long around the parsing as on it:

- every ``load_service_model`` first lists which services exist, by probing each of the ~400
  directories under ``botocore/data`` (and ``~/.aws/models``) for the model file: about 900
  ``stat``/``listdir`` calls per model, twice per client, only to check that ``s3`` exists;
- every document is parsed with ``object_pairs_hook=OrderedDict``, several times slower than
  plain ``json.loads`` (dicts keep insertion order anyway; ``botocore.model`` builds its own
  ordered maps from them).

This loader skips the service listing for ``s3`` (the version is still looked up, so a model
in ``AWS_DATA_PATH`` or ``~/.aws/models`` still wins over the bundled one) and parses with
plain dicts. Everything else is botocore's own code path.

Given a cache directory (the CLI's: ``$XDG_CACHE_HOME/persevere/botocore``), it also keeps
each document it parsed there, in ``marshal``'s format, which reads back in about half the
time of gunzip and ``json.loads`` (about 0.01 CPU-s per client; see benchmarks/README.md,
"Start-up"). A kept document is named by the BLAKE2b digest of the bytes it was parsed from
and by the interpreter's tag (marshal's format is the interpreter's), so a hit is the parse of
exactly the bytes on disk now: another botocore, or a model in ``AWS_DATA_PATH``, has other
bytes and so another name. Each kept file starts with the digest of what follows it, checked
on every read: a torn or damaged file is parsed again and rewritten (a temporary file renamed
over it: a reader sees a whole file or none). A directory that cannot be read or written
(read-only home, full disk) only means parsing, as without one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from botocore.loaders import JSONFileLoader, Loader, instance_cache

_CHECK_BYTES = 32  # the BLAKE2b digest of a kept file's payload, at its start


class _PlainJSONFileLoader(JSONFileLoader):
    def __init__(self, cache_dir: str | None = None) -> None:
        self.cache_dir = cache_dir

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        raw = Path(full_path).read_bytes()
        gzipped = full_path.endswith(".gz")  # botocore's two forms: .json and .json.gz
        if self.cache_dir is None:
            return _parse(raw, gzipped)
        name = f"{hashlib.blake2b(raw, digest_size=20).hexdigest()}.{sys.implementation.cache_tag}"
        kept_path = os.path.join(self.cache_dir, name)
        document = _read_kept(kept_path)
        if document is None:
            document = _parse(raw, gzipped)
            _keep(kept_path, document)
        return document


def _parse(raw: bytes, gzipped: bool) -> Any:
    return json.loads(gzip.decompress(raw) if gzipped else raw)


def _read_kept(path: str) -> Any:
    """The document kept at ``path``, or None (absent, unreadable, torn or damaged)."""
    try:
        kept = Path(path).read_bytes()
    except OSError:
        return None
    payload = memoryview(kept)[_CHECK_BYTES:]
    if hashlib.blake2b(payload, digest_size=_CHECK_BYTES).digest() != kept[:_CHECK_BYTES]:
        return None
    try:
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError):  # pragma: no cover - the digest matched
        return None


def _keep(path: str, document: Any) -> None:
    payload = marshal.dumps(document)
    check = hashlib.blake2b(payload, digest_size=_CHECK_BYTES).digest()
    directory = os.path.dirname(path)
    with contextlib.suppress(OSError):  # not kept: parsed again next time
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".kept-")
        try:
            with os.fdopen(fd, "wb") as fp:
                fp.write(check + payload)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


class S3Loader(Loader):
    @instance_cache
    def load_service_model(
        self, service_name: str, type_name: str, api_version: str | None = None
    ) -> Any:
        if service_name != "s3":
            return super().load_service_model(service_name, type_name, api_version)
        # As botocore does, without list_available_services (which only checks that the
        # service exists); determine_latest_version raises DataNotFoundError if it does not.
        if api_version is None:
            api_version = self.determine_latest_version(service_name, type_name)
        model = self.load_data(os.path.join(service_name, api_version, type_name))
        extras = self._find_extras(service_name, type_name, api_version)  # type: ignore[attr-defined]
        self._extras_processor.process(model, extras)  # type: ignore[attr-defined]
        return model


def s3_loader(data_path: str | None, cache_dir: str | None = None) -> S3Loader:
    """The loader ``botocore.loaders.create_loader`` would make, with the shortcuts above;
    ``cache_dir``: where parsed documents are kept between runs (None: nowhere)."""
    paths = None
    if data_path is not None:
        paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    return S3Loader(extra_search_paths=paths, file_loader=_PlainJSONFileLoader(cache_dir))
