"""Credentials that expire or rotate mid-upload: resolve the chain again, swap the result in.

Why this exists: botocore refreshes only credentials that come with an expiry time
(``RefreshableCredentials``: assume-role, SSO, IMDS and ECS/EKS container roles,
``credential_process`` answers with an ``Expiration``), and only on its own clock: an advisory
refresh 15 minutes before the expiry, a mandatory one 10 minutes before. It never reacts to the
server saying the credentials are dead, so a session revoked or cut short, an ``Expiration``
that lied, a clock that drifted, static keys rotated in ``~/.aws/credentials`` or a session an
``aws sso login`` renewed behind our back all end a multi-hour upload with ExpiredToken
(aws-cli#4562, s5cmd#678, botocore#704).

What it does instead: when S3 refuses the credentials, the whole chain is resolved again from
scratch (a new botocore session, so config and credentials files are re-read and no cached
assume-role or SSO answer is reused) and, if that yields credentials other than the ones the
refused request was signed with, they replace the client's. One re-resolution serves every
request that failed with the same credentials (single flight).

How it hooks in: two handlers on the client's own event system, so every client
:func:`._s3.open_client` makes gets this and no caller has to know:

- ``before-sign``: note in the request's context the (frozen) credentials it is signed with;
- ``after-call``: on a refused-credentials answer, renew, then raise :class:`CredentialsRefused`,
  a ``ClientError`` that also says whether fresh credentials are now in place. ``_s3.translate``
  makes that a ``TransientError(credentials_renewed=...)``, which ``call_with_retry`` retries at
  once without counting it as a failure.

The swap writes ``client._request_signer._credentials``: botocore has no public way to give an
existing client new credentials (its own ``_get_credentials`` reads that attribute). If a future
botocore drops it, :meth:`CredentialRenewer.install` logs that and leaves the client alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import botocore.exceptions

from ._quirks import CREDENTIALS_REJECTED_CODES

log = logging.getLogger("persevere")

# A re-resolution that found nothing new is trusted this long: requests that fail together
# (one per worker) then do not each run credential_process or call STS again.
RECHECK_AFTER_S = 1.0

_SIGNED_WITH = "persevere_signed_with"

Resolve = Callable[[], Awaitable[Any]]


class CredentialsRefused(botocore.exceptions.ClientError):
    """S3 refused the credentials; ``credentials_renewed`` says whether others are now in place."""

    def __init__(self, response: Any, operation_name: str, *, renewed: bool) -> None:
        super().__init__(response, operation_name)
        self.credentials_renewed = renewed


def resolve_chain(profile: str | None, region: str | None) -> Resolve:
    """Resolve the standard credential chain afresh each call, as a new process would."""

    async def resolve() -> Any:
        from aiobotocore.credentials import create_credential_resolver
        from aiobotocore.session import get_session

        session = get_session()
        if profile:
            session.set_config_variable("profile", profile)
        resolver = create_credential_resolver(session, cache={}, region_name=region)
        return await resolver.load_credentials()

    return resolve


class CredentialRenewer:
    """Gives one client fresh credentials when S3 refuses the ones it has."""

    def __init__(self, resolve: Resolve, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolve = resolve
        self._clock = clock
        self._lock = anyio.Lock()
        self._signer: Any = None
        self._unchanged_at: float | None = None  # when a re-resolution last found nothing new
        self.renewals = 0

    def install(self, client: Any) -> None:
        signer = getattr(client, "_request_signer", None)
        if signer is None or not hasattr(signer, "_credentials"):
            log.debug("this botocore has no _request_signer._credentials: no credential renewal")
            return
        self._signer = signer
        client.meta.events.register("before-sign.s3", self._note_credentials)
        client.meta.events.register("after-call.s3", self._check_answer)

    async def _frozen(self) -> Any:
        credentials = self._signer._credentials
        return None if credentials is None else await credentials.get_frozen_credentials()

    async def _note_credentials(self, request: Any, **_: Any) -> None:
        request.context[_SIGNED_WITH] = await self._frozen()

    async def _check_answer(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: Any, **_: Any
    ) -> None:
        code = (parsed.get("Error") or {}).get("Code")
        if http_response.status_code < 300 or code not in CREDENTIALS_REJECTED_CODES:
            return
        renewed = await self.renew(context.get(_SIGNED_WITH), str(code))
        raise CredentialsRefused(parsed, model.name, renewed=renewed)

    async def renew(self, signed_with: Any, code: str) -> bool:
        """True when credentials other than ``signed_with`` are in place (now or already)."""
        async with self._lock:
            current = await self._frozen()
            if signed_with is not None and current != signed_with:
                return True  # another request renewed them, or botocore refreshed them
            unchanged_at = self._unchanged_at
            if unchanged_at is not None and self._clock() - unchanged_at < RECHECK_AFTER_S:
                return False
            why = "the chain has none newer"
            try:
                fresh = await self._resolve()
                fresh_frozen = None if fresh is None else await fresh.get_frozen_credentials()
            except Exception as exc:  # any failure to renew leaves S3's refusal as the report
                fresh_frozen, why = None, f"resolving them again failed: {exc}"
            if fresh_frozen is None or fresh_frozen == current:
                log.warning("S3 refused the credentials (%s); %s", code, why)
                self._unchanged_at = self._clock()
                return False
            self._signer._credentials = fresh
            self._unchanged_at = None
            self.renewals += 1
            method = getattr(fresh, "method", None) or "credential chain"
            log.warning("S3 refused the credentials (%s); using fresh ones (%s)", code, method)
            return True
