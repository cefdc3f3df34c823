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
"""

from __future__ import annotations

import json
import os
from typing import Any

from botocore.loaders import JSONFileLoader, Loader, instance_cache


class _PlainJSONFileLoader(JSONFileLoader):
    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return json.loads(fp.read())


class S3Loader(Loader):
    FILE_LOADER_CLASS = _PlainJSONFileLoader

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


def s3_loader(data_path: str | None) -> S3Loader:
    """The loader ``botocore.loaders.create_loader`` would make, with the shortcuts above."""
    if data_path is None:
        return S3Loader()
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    return S3Loader(extra_search_paths=paths)
