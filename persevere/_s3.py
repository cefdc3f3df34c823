"""The S3 client: how it is configured, and the one place botocore/aiohttp errors are translated.

Configuration choices, and why:
- botocore retries off (``total_max_attempts=1``): :mod:`._retry` owns retrying.
- ``payload_signing_enabled=False``: every part carries a CRC that S3 verifies, so SigV4's
  SHA-256 of the payload would hash every byte a second time for no extra safety.
- ``parameter_validation=False``: part bodies are persevere's own async streams (so memory
  stays bounded and nothing is copied), which botocore's blob validator does not know.
- connection pool sized to the concurrency (plus room for ListParts/Complete).
- a :class:`._credentials.CredentialRenewer` on every client: credentials S3 refuses as expired
  are replaced by a fresh resolution of the chain, and the request is retried uncounted.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import PersevereError, ResumableError, S3Error, UploadGone, UsageError
from ._logs import one_line
from ._options import UploadOptions
from ._quirks import THROTTLE_CODES, TRANSIENT_CODES, TRANSIENT_STATUSES, credentials_expired
from ._retry import Call, RetryPolicy, TransientError, call_with_retry, policy

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client as S3Client
else:
    S3Client = Any  # types-aiobotocore is a development dependency only

T = TypeVar("T")

# Whether what botocore and aiohttp loaded stays frozen (out of the collector's scans) after
# the client closes. A process that ends with its upload (the CLI) sets this: unfreezing hands
# a few hundred thousand objects back to the collector just in time for the interpreter's
# final collections at exit (about 0.1 CPU-s). A library caller keeps the default, so nothing
# of its own stays frozen.
FROZEN_UNTIL_EXIT = False

# Where botocore's parsed documents (the S3 model) are kept between runs: the CLI sets it (see
# _botocore_loader); a library caller's process parses them for each client, writing nothing.
MODELS_CACHE_DIR: str | None = None

# Importing aiohttp in the CLI's process without loading the system CA file twice.
#
# As it is imported, aiohttp builds two module-level TLS contexts (``aiohttp.connector``), and
# each loads the system CA file (``ssl.create_default_context``; ``set_default_verify_paths``):
# about 0.04 CPU-s together, a tenth of a 0-byte upload (see benchmarks/README.md, "Start-up").
# They are only the defaults of a request that brings no TLS context of its own. persevere's
# requests are all aiobotocore's, and aiobotocore always brings its own (``httpsession``: built
# from botocore's ``verify``, with the CA bundle, AWS_CA_BUNDLE or certifi's; no CA at all for
# plain HTTP), so persevere never uses aiohttp's defaults.
#
# The CLI's process makes no other HTTP requests, so there (CA_FILE_UNUSED, set by
# ``_cli.main``) aiohttp is imported with ``SSL_CERT_FILE`` naming an empty file for the length
# of the import: OpenSSL reads that variable when the defaults are built, finds no certificate in
# it and goes on. Nothing is weakened: the verifying default still requires a valid certificate
# (checked against OpenSSL's hashed CA directory, which it reads when a certificate is met, or
# refused), the variable is restored at once, and the ``ssl`` module is not touched. In a library
# caller's process aiohttp's defaults may serve the caller's own sessions: there aiohttp is
# imported as it is. Set by the CLI: no request in its process uses aiohttp's defaults.
CA_FILE_UNUSED = False


def import_aiohttp() -> None:
    """Import aiohttp (a no-op once imported), without the CA file where it is unused
    (see the comment above ``CA_FILE_UNUSED``)."""
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


@contextmanager
def many_clients() -> Iterator[None]:
    """For work that opens client after client (a tree's files): each one's objects are
    unfrozen as it closes, whatever :data:`FROZEN_UNTIL_EXIT` says, so they are collected
    rather than kept until exit (about 8 MiB a client)."""
    global FROZEN_UNTIL_EXIT
    before, FROZEN_UNTIL_EXIT = FROZEN_UNTIL_EXIT, False
    try:
        yield
    finally:
        FROZEN_UNTIL_EXIT = before


_REDIRECTED = (
    "the bucket is in another region, or on another endpoint: give its --region (or --endpoint-url)"
)
_HINTS = {
    "AccessDenied": "check the IAM policy: uploads need s3:PutObject, resume also "
    "s3:ListMultipartUploadParts, abort s3:AbortMultipartUpload",
    "InvalidAccessKeyId": "the access key is not known to this endpoint: check credentials",
    "SignatureDoesNotMatch": "the secret key does not match the access key: check credentials",
    # (not "resume": a refusal before anything was created leaves nothing to resume; after,
    # the command that resumes is said on the next line)
    "ExpiredToken": "the session credentials expired: refresh them, then run again",
    "RequestTimeTooSkewed": "this machine's clock is off by more than 15 minutes: fix the time "
    "(NTP), then run again",
    "NoSuchBucket": "check the bucket name, region and endpoint; a bucket deleted takes its "
    "uploads with it: then persevere cp starts again",
    # AWS: a bucket in another region than the one given (botocore's redirect did not mend it)
    "PermanentRedirect": _REDIRECTED,
    "301": _REDIRECTED,
    "InvalidBucketName": "check the bucket name",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to talk to S3. Recorded in the journal so resume needs nothing else."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None  # else AWS_CA_BUNDLE / the profile's ca_bundle / certifi
    # False: the endpoint's TLS certificate is not checked (anyone on the path can read and
    # alter the traffic). Never recorded in the journal: each command must ask for it again.
    verify_ssl: bool = True

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            check_endpoint_url(self.endpoint_url)
        if isinstance(self.ca_bundle, os.PathLike):  # (a Path, as every path the API takes)
            object.__setattr__(self, "ca_bundle", os.fspath(self.ca_bundle))

    @staticmethod
    def from_environment(
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        ca_bundle: str | None = None,
        *,
        verify_ssl: bool = True,
    ) -> Endpoint:
        """Fill in what the user did not say from the standard AWS variables.

        The explicit endpoint is recorded; an endpoint from a profile's config file is not,
        since resume re-reads that profile anyway.
        """
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):  # the first one set
            if not endpoint_url and os.environ.get(name) and not _ignoring_configured(profile):
                endpoint_url = os.environ[name]
                _check_found(endpoint_url, name)
        endpoint_url = endpoint_url or None
        if ca_bundle is not None:
            if not verify_ssl:
                raise UsageError(
                    "a CA bundle verifies the certificate, which is not to be verified: give "
                    "one or the other",
                    param="ca_bundle",
                )
            if not ca_bundle:  # (os.path.abspath would make it the working directory)
                raise UsageError(
                    "an empty path names nothing (an unset shell variable?): give the CA "
                    "bundle's path",
                    param="ca_bundle",
                )
            ca_bundle = os.path.abspath(os.path.expanduser(ca_bundle))
            if os.path.isdir(ca_bundle):
                raise UsageError(f"CA bundle {ca_bundle} is a directory (a bundle is one PEM file)")
            if not os.path.isfile(ca_bundle):
                raise UsageError(f"CA bundle {ca_bundle} does not exist")
        profile = profile or os.environ.get("AWS_PROFILE") or None
        return Endpoint(endpoint_url, region, profile, ca_bundle, verify_ssl)

    def overridden_by(self, other: Endpoint | None) -> Endpoint:
        """This endpoint with ``other``'s fields where they are set (resume's overrides).

        A profile given whose AWS config names an endpoint is that endpoint, not the one
        recorded (an ``--endpoint-url`` the run does not give again): ``cp`` run as it
        answered "already completed" from the recorded endpoint."""
        if other is None:
            return self
        endpoint_url = other.endpoint_url or self.endpoint_url
        if other.endpoint_url is None and other.profile is not None:
            endpoint_url = config_endpoint_url(other) or endpoint_url
        return Endpoint(
            endpoint_url,
            other.region or self.region,
            other.profile or self.profile,
            other.ca_bundle or self.ca_bundle,
            self.verify_ssl and other.verify_ssl,
        )


def _verify(endpoint: Endpoint) -> str | bool | None:
    """What to verify TLS with: the CA bundle, botocore's default, or nothing (plain HTTP, or
    ``verify_ssl=False``).

    An ``http://`` endpoint never speaks TLS (botocore keeps the endpoint's scheme, even when
    it follows a region redirect), yet aiobotocore would load the whole CA store for it in a
    worker thread before the first request (about 20 ms of CPU).
    """
    plain = bool(endpoint.endpoint_url and endpoint.endpoint_url.lower().startswith("http://"))
    return False if plain or not endpoint.verify_ssl else endpoint.ca_bundle


def check_endpoint_url(url: str, *, param: str | None = "endpoint_url") -> None:
    """Refuse an endpoint URL that is not ``http(s)://HOST[:PORT]``, without repeating it (it
    may hold a secret).

    Credentials in the URL cannot sign S3 requests (aiohttp would send them as Basic auth,
    clashing with SigV4's Authorization header), and the URL goes into the state file and into
    messages. A path (``http://host/bench``) is put by botocore in front of every request's
    path: ``s3://bench/K`` would become the object ``bench/K`` in the bucket ``bench`` while
    persevere reported ``s3://bench/K``; no gateway need is worth a false success.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        userinfo = parts.username is not None or parts.password is not None
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:  # not repeated: it may hold a secret
        raise UsageError(f"the endpoint URL is not a valid URL ({exc})", param=param) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or (
            parts.query or parts.fragment or "?" in url or "#" in url):  # fmt: skip
        raise UsageError(
            "the endpoint URL must be http://HOST[:PORT] or https://HOST[:PORT] (no path, "
            "?query or #fragment)",
            param=param,
        )
    if userinfo:
        host = parts.netloc.rpartition("@")[2]
        shown = parts._replace(netloc=f"***@{host}", path="", query="", fragment="").geturl()
        raise UsageError(
            f"endpoint URL {shown} holds credentials (user:password@): give it without them, "
            "and the credentials through the AWS chain (environment, profile); S3 requests are "
            "signed with those, and the URL is stored in the state file",
            param=param,
        )
    if parts.path not in ("", "/"):
        raise UsageError(
            "the endpoint URL has a path after HOST[:PORT]: every request would go under it, "
            "so the object would not land at the s3:// URL given; give http://HOST[:PORT] or "
            "https://HOST[:PORT], and the bucket in the s3:// URL",
            param=param,
        )


def _ignoring_configured(profile: str | None) -> bool:
    """``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`` (or the profile's
    ``ignore_configured_endpoint_urls``) set: botocore and the aws cli then ignore the
    endpoint variables and the config's ``endpoint_url``, and so does persevere (it uploaded
    to ``AWS_ENDPOINT_URL`` while every other tool of that environment looked at AWS)."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        return True
    return bool(_from_config(profile or os.environ.get("AWS_PROFILE"), _ignores_configured))


def _ignores_configured(session: Any) -> Any:
    return session.get_config_variable("ignore_configured_endpoint_urls")


def _from_config(profile: str | None, read: Callable[[Any], T]) -> T | None:
    """``read`` of a botocore session for ``profile`` over the AWS config file; None when
    there is no config file (no botocore to load for nothing) or it lacks the profile (said
    where the client is made)."""
    config = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    if not os.path.isfile(os.path.expanduser(config)):
        return None
    import botocore.exceptions
    import botocore.session

    try:
        return read(botocore.session.Session(profile=profile))
    except botocore.exceptions.ProfileNotFound:
        return None
    except botocore.exceptions.ConfigParseError as exc:
        raise _unparsable(exc) from exc


def _unparsable(exc: Any) -> UsageError:
    """botocore's ConfigParseError (an AWS config or credentials file with a typo: a
    ``[default`` without its bracket), as one line naming the file."""
    return UsageError(
        f"the AWS config or credentials file {exc.kwargs.get('path')} cannot be parsed",
        hint="fix the line botocore cannot read (a section header needs its closing ']'), or "
        "point AWS_CONFIG_FILE or AWS_SHARED_CREDENTIALS_FILE at another file",
    )


def config_endpoint_url(endpoint: Endpoint) -> str | None:
    """The endpoint URL the AWS config file gives ``endpoint`` when no flag or variable gives
    one (its profile's, or a services section's, ``endpoint_url``), as botocore will find it;
    None: there is none, or the config file is not read (no file, a profile it lacks).

    Not recorded in a file's journal (resume reads the profile again), but a tree's re-run
    answers "unchanged" without a request: it must know that an edited config now sends
    its objects elsewhere.
    """
    if endpoint.endpoint_url is not None:
        return None

    def read(session: Any) -> Any:
        from botocore.configprovider import ConfiguredEndpointProvider

        if _ignores_configured(session):
            return None
        scoped = session.get_scoped_config()
        return ConfiguredEndpointProvider(session.full_config, scoped, "s3").provide()

    url = _from_config(endpoint.profile, read)
    if not url:
        return None
    who = f"profile {endpoint.profile!r}" if endpoint.profile else "the default profile"
    _check_found(str(url), f"AWS config file ({who})")  # refused in its source's name
    return str(url)


def _check_found(url: str, where: str) -> None:
    """An endpoint URL no flag gave (an environment variable, the AWS config file), held to
    the same rules as one given, and refused in its source's name."""
    try:
        check_endpoint_url(url, param=None)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


@asynccontextmanager
async def open_client(
    endpoint: Endpoint, options: UploadOptions | None = None
) -> AsyncIterator[S3Client]:
    """An aiobotocore S3 client using the standard AWS credential chain, its pool and timeouts
    from ``options`` (default: a small pool, for metadata requests).

    The cyclic garbage collector is paused while botocore, aiohttp and the S3 model load (they
    allocate a few hundred thousand objects, so collections would run over and over, each
    scanning everything loaded so far), and what they loaded is then frozen (``gc.freeze``) for
    as long as the client lives, so later collections skip it; see benchmarks/README.md.
    """
    options = options or UploadOptions(concurrency=8, read_timeout_s=60.0)
    collecting = gc.isenabled()
    gc.disable()
    try:
        import botocore.exceptions
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        from ._botocore_loader import s3_loader

        session = get_session()
        # Only the client's creation is translated here: a ValueError raised later, while the
        # client is in use, is not a bad endpoint URL.
        try:
            # (AWS_PROFILE naming no profile: the first config lookup raises ProfileNotFound)
            data_path = session.get_config_variable("data_path")
            session.register_component("data_loader", s3_loader(data_path, MODELS_CACHE_DIR))
            if endpoint.profile:
                session.set_config_variable("profile", endpoint.profile)
            region = endpoint.region
            if region is None:
                region = session.get_config_variable("region")
            if region == "":  # (an unset shell variable: awscrt cannot sign for it)
                raise botocore.exceptions.InvalidRegionError(region_name=region)
            creator = session.create_client(
                "s3",
                endpoint_url=endpoint.endpoint_url,
                region_name=endpoint.region,
                verify=_verify(endpoint),
                config=AioConfig(
                    max_pool_connections=options.max_connections,
                    connect_timeout=options.connect_timeout_s,
                    read_timeout=options.read_timeout_s,
                    retries={"mode": "standard", "total_max_attempts": 1},
                    parameter_validation=False,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"payload_signing_enabled": False},
                    tcp_keepalive=True,
                ),
            )
            client = await creator.__aenter__()
        except botocore.exceptions.ProfileNotFound as exc:
            _require_readable_config()  # (botocore skips a file it cannot open: "not found")
            named = os.environ.get("AWS_PROFILE")
            if endpoint.profile in (None, named):
                raise UsageError(f"AWS profile {named!r} (AWS_PROFILE) not found") from exc
            raise UsageError(
                f"AWS profile {endpoint.profile!r} not found", param="profile"
            ) from exc
        except botocore.exceptions.InvalidRegionError as exc:  # ("us-east-1 ", "us east")
            raise UsageError(
                f"the region {exc.kwargs.get('region_name')!r} is not a region's name (such as "
                "us-east-1): check --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's"
            ) from exc
        except botocore.exceptions.PartialCredentialsError as exc:  # (one variable not set)
            raise S3Error(
                f"the AWS credentials are incomplete: {exc}",
                hint="give both the access key and the secret key (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or the profile's), or neither to use a profile",
            ) from exc
        except botocore.exceptions.ConfigParseError as exc:
            raise _unparsable(exc) from exc
        except (botocore.exceptions.TokenRetrievalError, botocore.exceptions.SSOError) as exc:
            who = f"profile {endpoint.profile!r}" if endpoint.profile else "the default profile"
            raise S3Error(f"cannot obtain AWS credentials from {who}: {one_line(str(exc).strip())}",
                          hint=_SSO_LOGIN) from exc  # fmt: skip
        except (
            botocore.exceptions.CredentialRetrievalError,  # credential_process failed
            botocore.exceptions.InfiniteLoopConfigError,  # source_profile chains that loop
            json.JSONDecodeError,  # credential_process printed no JSON
        ) as exc:
            who = f"profile {endpoint.profile!r}" if endpoint.profile else "the default profile"
            why = f"its credential_process printed no JSON ({exc})" if isinstance(
                exc, json.JSONDecodeError) else str(exc)  # fmt: skip
            if _unreachable(why):  # (a container's or instance's credential endpoint, not up yet)
                raise ResumableError(
                    f"cannot obtain AWS credentials from {who}: {why}",
                    hint="nothing was created: the credential endpoint could not be reached; "
                    "run the same command later",
                ) from exc
            raise S3Error(
                f"cannot obtain AWS credentials from {who}: {why}",
                hint="check the profile (aws sso login, the credential process, its "
                "source_profile), or give other credentials",
            ) from exc
        except (ValueError, botocore.exceptions.InvalidEndpointConfigurationError) as exc:
            if "endpoint" in str(exc).lower() or "url" in str(exc).lower():
                raise UsageError(
                    f"invalid endpoint URL {endpoint.endpoint_url!r}: {exc}", param="endpoint_url"
                ) from exc
            raise
        try:
            # The endpoint botocore found in the AWS config file (a profile's or a services
            # section's endpoint_url): not known before the client is made, read again by
            # every command, so checked here.
            if endpoint.endpoint_url is None and client.meta.endpoint_url:
                who = f"profile {endpoint.profile!r}" if endpoint.profile else "the default profile"
                _check_found(str(client.meta.endpoint_url), f"AWS config file ({who})")
            # botocore adds "Expect: 100-continue" to any body with ``read``, and aiohttp waits
            # for the 100 before the body. Parts keep it (SeaweedFS spent ~10 % more CPU per
            # GiB without it, measured); a tree's small files' PutObject go without, as their
            # bodies of bytes always did (their bodies are watched now, so they have ``read``).
            client.meta.events.register_last("before-call.s3", _no_expect_for_put_object)
            from ._body import register_payload
            from ._trailer import sign_trailer

            client.meta.events.register("before-sign.s3.UploadPart", sign_trailer)
            register_payload()
            client.meta.events.register("after-call.s3", _refuse_redirected)
            from ._credentials import CredentialRenewer, resolve_chain

            resolve = resolve_chain(endpoint.profile, resolved_region(client))
            CredentialRenewer(resolve).install(client)
            # (a library caller's own frozen objects, gc.freeze before a fork, stay frozen:
            # unfreezing is all or nothing, so then what this client froze stays frozen too)
            callers = gc.get_freeze_count()
            gc.freeze()
            if collecting:
                gc.enable()
            try:
                yield client
            finally:
                if not FROZEN_UNTIL_EXIT and not callers:
                    gc.unfreeze()
        finally:
            await creator.__aexit__(None, None, None)
    finally:
        if collecting:
            gc.enable()


def _no_expect_for_put_object(model: Any, params: Any, **_: Any) -> None:
    """botocore ``before-call.s3``, after its ``add_expect_header``: a PutObject asks for no
    100-continue (a small file: the round trip would cost more than its body)."""
    if model.name == "PutObject":
        params["headers"].pop("Expect", None)


def _refuse_redirected(http_response: Any, model: Any, **_: Any) -> None:
    """An answer that came after a redirect (aiohttp follows them) is refused: the request
    that reached the new place was not the one signed (another host drops its Authorization,
    another path breaks its signature), so S3's answer there (AccessDenied, most often) would
    name the wrong fault."""
    raw = getattr(http_response, "raw", None)
    history: tuple[Any, ...] = tuple(getattr(raw, "history", None) or ())
    if all(answer is raw for answer in history):  # none, or one with no Location: not followed
        return  # (AWS's 301 PermanentRedirect, which botocore's region redirector handles)
    from urllib.parse import urlsplit

    to = urlsplit(str(http_response.url))
    raise UsageError(
        f"{model.name}: the endpoint answered {history[0].status} (a redirect) to "
        f"{to.scheme}://{to.netloc}: requests are signed for the endpoint they are sent to",
        hint="give the endpoint that answers (--endpoint-url), or on AWS the bucket's region "
        "(--region)",
    )


async def attempt(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """One S3 request, its failure translated (transient or permanent)."""
    try:
        return await call()
    except Exception as exc:
        translated = translate(exc, what)
        if translated is None:
            raise
        raise translated from exc


async def request(
    what: str,
    call: Callable[[], Awaitable[T]],
    *,
    retry: RetryPolicy | None = None,
    exhausted: Callable[[TransientError, int], PersevereError] | None = None,
) -> T:
    """An S3 request, retried by ``retry`` (default ``Call.LOOKUP``'s, for a request outside
    an upload); ``exhausted`` makes the error of a budget run out (default: an S3Error)."""

    retry = retry or policy(Call.LOOKUP)
    exhausted = exhausted or (lambda exc, tries: S3Error(f"{what} failed {tries} times: {exc}"))
    return await call_with_retry(retry, what, lambda: attempt(what, call), exhausted)


async def pages(
    what: str,
    fetch: Callable[[Any], Awaitable[Any]],
    next_marker: Callable[[Any], Any],
    marker: Any = None,
) -> AsyncIterator[Any]:
    """Every page of a listing: ``fetch(marker)`` (``marker`` the first page's) until
    ``next_marker(page)`` is None.

    A marker that does not move on would loop forever (a server bug seen in the wild): it is
    an error instead.
    """
    while True:
        page = await fetch(marker)
        yield page
        following = next_marker(page)
        if following is None:
            return
        if following == marker:
            raise S3Error(f"{what} returned a truncated page without a new marker")
        marker = following


def quiet_abandoned_connection_errors() -> None:
    """Keep aiohttp's orphaned body-writer failures off stderr.

    When a connection dies mid-body, aiohttp's background ``write_bytes`` task can finish with
    the same connection error the request already raised (and persevere retried); asyncio then
    prints "Task exception was never retrieved" with a traceback. Those are logged at debug
    level instead; anything else goes to the loop's default handler.
    """
    import asyncio

    import_aiohttp()  # the first import of aiohttp: see CA_FILE_UNUSED
    import aiohttp

    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, aiohttp.ClientError | ConnectionError | TimeoutError):
            logging.getLogger("persevere").debug("abandoned connection: %s", exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


_SSO_LOGIN = (
    "the AWS SSO login is missing or expired: run 'aws sso login' (with the profile), "
    "then run again"
)


def _unreachable(why: str) -> bool:
    """Does a credential provider's failure say its endpoint could not be reached (botocore
    words the connection errors of the container and instance metadata providers so)?"""
    return any(words in why for words in ("Could not connect", "timed out", "Connection was closed",
                                          "Read timeout", "Connect timeout"))  # fmt: skip


def resolved_region(client: S3Client) -> str | None:
    region = client.meta.region_name
    return str(region) if region else None


def translate(exc: BaseException, what: str) -> TransientError | PersevereError | None:
    """Map a botocore/aiohttp/OS failure to a transient or permanent persevere error.

    Returns ``None`` for anything unrecognised: that is a bug and keeps its traceback.
    """
    import aiohttp
    import botocore.exceptions as bce

    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = error.get("Message") or code or f"HTTP {status}"
        text = f"{what}: {code or status}: {message}"
        # Set by ._credentials when S3 refused the credentials: are fresh ones in place now?
        renewed: bool | None = getattr(exc, "credentials_renewed", None)
        if renewed is False:
            text += " (the credential chain gives no newer credentials)"
        if renewed or credentials_expired(code):  # expired ones may be renewed by the next attempt
            return TransientError(text, code=code, credentials_renewed=bool(renewed))
        if code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
            return TransientError(text, code=code, throttle=code in THROTTLE_CODES or status == 503)
        if code == "NoSuchUpload":
            return UploadGone(
                f"{text} (the multipart upload was aborted, elsewhere or by a lifecycle rule)",
                code=code,
                hint="start a new upload",
            )
        # No error body to name it (a HEAD, or a bare proxy answer): the status stands in.
        code = code or (str(status) if status else "")
        refused = S3Error(text, code=code or None, hint=_HINTS.get(code))
        if code == "NoSuchBucket":  # (its uploads are gone with it: nothing to resume)
            refused.next_step = None
        return refused
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return S3Error(
            f"{what}: no usable AWS credentials found",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or 'aws configure')",
        )
    if isinstance(exc, RuntimeError) and "AWS_ERROR_INVALID_ARGUMENT" in str(exc):
        # awscrt's signer, given an empty access key or secret (``aws_access_key_id =`` left
        # blank in a profile): its bare RuntimeError was a traceback.
        return S3Error(
            f"{what}: the AWS credentials cannot sign a request (an empty access key or "
            "secret key?)",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or 'aws configure')",
        )
    if isinstance(exc, bce.TokenRetrievalError | bce.SSOError):
        # An SSO login missing or expired (at the first request: SSO credentials are fetched
        # then): a person logs in again; no retry mends it.
        return S3Error(f"{what}: cannot obtain AWS credentials: {one_line(str(exc).strip())}",
                       hint=_SSO_LOGIN)  # fmt: skip
    if isinstance(exc, bce.CredentialRetrievalError):
        # Mid-upload (the client was made with credentials that worked): a refresh that failed
        # once (a vault's credential process, the instance's or container's credential
        # endpoint unreachable for a moment) is retried as any transient failure, and the
        # upload stops resumable.
        return TransientError(
            f"{what}: cannot obtain AWS credentials: {one_line(str(exc).strip())}"
        )
    if isinstance(exc, bce.ParamValidationError):  # (a value the API was given, refused)
        return UsageError(f"{what}: {exc}")
    if isinstance(exc, bce.NoRegionError):
        return UsageError("no AWS region configured: pass --region or set AWS_DEFAULT_REGION")
    if isinstance(exc, ssl.SSLEOFError) or "EOF occurred in violation" in str(exc):
        return TransientError(f"{what}: TLS connection cut: {_short(exc)}")  # a dropped link
    if isinstance(exc, bce.SSLError | ssl.SSLError):
        return S3Error(
            f"{what}: TLS failure: {exc}", hint="check the endpoint URL and the CA bundle"
        )
    # Loading the CA bundle botocore was given (the flag, AWS_CA_BUNDLE or the profile's
    # ca_bundle) failed: the file is missing or unreadable, or holds no certificate. Bad input:
    # no retry mends it.
    cause = exc.kwargs.get("error") if isinstance(exc, bce.HTTPClientError) else None
    pem = isinstance(cause, ssl.SSLError) and cause.library in ("X509", "PEM")
    if pem or isinstance(cause, FileNotFoundError | PermissionError | IsADirectoryError):
        return UsageError(
            f"{what}: the CA bundle cannot be used: {cause}",
            hint="give --ca-bundle (or AWS_CA_BUNDLE, or the profile's ca_bundle) a readable "
            "PEM file of CA certificates",
        )
    if isinstance(
        exc,
        bce.ConnectionError
        | bce.HTTPClientError
        | bce.ReadTimeoutError
        | aiohttp.ClientError
        | TimeoutError
        | ConnectionError,
    ):
        return TransientError(f"{what}: {_short(exc)}")
    if isinstance(exc, OSError):
        return TransientError(f"{what}: {exc.strerror or exc}")
    return None


def _require_readable_config() -> None:
    """The AWS config and credentials files, where they are there but cannot be read (root's,
    0600, after ``sudo aws configure``): said, as a file that does not parse is."""
    for variable, default in (("AWS_CONFIG_FILE", "~/.aws/config"),
                              ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")):  # fmt: skip
        path = os.path.expanduser(os.environ.get(variable) or default)
        try:
            with open(path, "rb"):
                pass
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(
                f"cannot read the AWS file {path}: {exc.strerror} (a profile in it is not seen)",
                hint="make it readable to this user (or give its credentials another way)",
            ) from None


_URL_RE = re.compile(r"(https?://[^/\s\"]+)[^\s\"]*")


def _short(exc: BaseException) -> str:
    """First line, with URLs cut to scheme and host (upload ids and keys are noise here)."""
    text = str(exc) or type(exc).__name__
    return _URL_RE.sub(r"\1", text.splitlines()[0])[:300]
