"""Importing aiohttp in the CLI's process without loading the system CA file twice.

As it is imported, aiohttp builds two module-level TLS contexts (``aiohttp.connector``), and
each loads the system CA file (``ssl.create_default_context``; ``set_default_verify_paths``):
about 0.04 CPU-s together, a tenth of a 0-byte upload (see benchmarks/README.md, "Start-up").
They are only the defaults of a request that brings no TLS context of its own. persevere's
requests are all aiobotocore's, and aiobotocore always brings its own (``httpsession``: built
from botocore's ``verify``, with the CA bundle, AWS_CA_BUNDLE or certifi's; no CA at all for
plain HTTP), so persevere never uses aiohttp's defaults.

The CLI's process makes no other HTTP requests, so there (:data:`CA_FILE_UNUSED`, set by
``_cli.main``) aiohttp is imported with ``SSL_CERT_FILE`` naming an empty file for the length
of the import: OpenSSL reads that variable when the defaults are built, finds no certificate in
it and goes on. Nothing is weakened: the verifying default still requires a valid certificate
(checked against OpenSSL's hashed CA directory, which it reads when a certificate is met, or
refused), the variable is restored at once, and the ``ssl`` module is not touched. In a library
caller's process aiohttp's defaults may serve the caller's own sessions: there aiohttp is
imported as it is.
"""

from __future__ import annotations

import os
import sys

# Set by the CLI: no request in this process uses aiohttp's default TLS contexts.
CA_FILE_UNUSED = False


def import_aiohttp() -> None:
    """Import aiohttp (a no-op once imported), without the CA file where it is unused."""
    if not CA_FILE_UNUSED or "aiohttp" in sys.modules:
        import aiohttp

        return
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = os.devnull  # read by OpenSSL as aiohttp builds its defaults
    try:
        import aiohttp  # noqa: F401
    finally:
        if before is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = before
