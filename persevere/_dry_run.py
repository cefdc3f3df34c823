"""``--dry-run`` for ``upload start`` and ``cp``: what the run would do, and whether S3 would
let it, with no part sent and no state file written.

Everything the real run checks before its first request is checked the same way (the plan,
the state file, the object options, ``no_overwrite``), and raises the same errors with the
same exit codes. Then a **probe** asks S3 the question the real run's first request asks:

- a new upload: **CreateMultipartUpload, then AbortMultipartUpload at once**, with the very
  bucket, key, checksum and object options of the real run. It is the only request that proves
  what matters and cannot be proven read-only: the credentials, the bucket, ``s3:PutObject``
  on the key, and that the endpoint accepts the object options (a KMS key, object lock on the
  bucket, the checksum algorithm). The upload holds no part, so nothing is stored or billed; it
  is aborted immediately (``s3:AbortMultipartUpload``; if that is refused, the exact abort
  command is printed). Read-only requests were considered and rejected: HeadBucket and
  ListMultipartUploads need permissions an uploader often lacks and prove nothing about writing.
- an upload ``cp`` would resume: ListParts on it (what resume asks first; read-only).

Plus a HeadObject (read-only): whether the key exists (``no_overwrite`` refuses then, as the
real run would). Never an UploadPart or CompleteMultipartUpload. ``cp``'s dry run decides
as ``cp`` does (:func:`._decide.decide`), learning by the same read-only questions: whether
a completed upload is still the object, whether an upload gone was completed by an earlier
run; it does not read the file (``cp`` re-reads it where its identity changed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import anyio

from ._completed import recheck, run_again
from ._completion import endpoint_of, planned, recorded_session, session_of
from ._decide import Decision, Found, Learnt, Source, decide
from ._errors import PersevereError, ResumableError, StateFileError, UploadGone
from ._journal import HeaderTorn, JournalState, already_exists, require_regular
from ._plan import PartPlan
from ._request import Request, refuse_source_as_state
from ._request import Source as Named
from ._retry import Call, TransientError
from ._s3 import Endpoint, config_endpoint_url, open_client, resolved_region
from ._session import MultipartSession
from ._write_once import Exists, refuse_existing

log = logging.getLogger("persevere")

PROBE_TIMEOUT_S = 60.0
ABORT_TIMEOUT_S = 10.0  # the probe's abort, as bench's cleanup: a stop waits no longer


@dataclass(frozen=True, slots=True)
class DryRun:
    """What ``start``/``cp`` would do (``action``), and what the probe found."""

    action: str  # "start", "resume", "check" (cp: completed earlier)
    file: str
    size: int
    bucket: str
    key: str
    part_size: int
    part_count: int
    checksum_algorithm: str
    checksum_pinned: bool
    state_file: str
    state: str  # what happens to the state file
    endpoint_url: str | None
    region: str | None
    profile: str | None
    object_exists: bool | None  # None: HeadObject refused (no s3:GetObject)
    probe: str  # what was asked, and what S3 said
    leftover: str | None = None  # the probe upload, if its abort was refused


@contextlib.contextmanager
def _nothing_changed() -> Iterator[None]:
    """A dry run whose questions S3 did not answer (retries exhausted) created and changed
    nothing: no upload to speak of, the same command to run later."""
    try:
        yield
    except ResumableError as exc:
        cause = exc.__cause__
        code = cause.code if isinstance(cause, TransientError) else None
        run_again(exc, code, "a dry run: nothing was created or changed;")
        raise


async def dry_run_start(request: Request, exists: Exists = "ask") -> DryRun:
    """``upload``'s checks of ``request`` and a Create+Abort probe; raises what start would
    raise. ``exists``: whether the key exists, if cp's check found it already (HeadObject)."""
    with _nothing_changed():
        request.refuse_for_stream(dry_run=True)  # then prepare checks the rest, as upload does
        identity, plan, state_path = await anyio.to_thread.run_sync(request.prepare)
        assert isinstance(plan, PartPlan)  # a file's (a stream was refused)
        await anyio.to_thread.run_sync(_check_new_state_file, state_path)
        endpoint = request.endpoint or Endpoint.from_environment(None, None, None)
        async with open_client(endpoint, request.transfer) as client:
            # the header the run would write, and its session (as _create.created makes them)
            draft = request.new_header(endpoint, resolved_region(client), identity, plan)
            session = session_of(client, draft, request.transfer.policy(Call.FIRST))
            exists = await refuse_existing(session, exists)
            probe, leftover = await _probe_create(session, request)
        return DryRun(
            "start", draft.file_path, draft.file_size, draft.bucket, draft.key, plan.part_size,
            plan.part_count, draft.checksum_algorithm, draft.checksum_pinned, str(state_path),
            _new_state(state_path), endpoint.endpoint_url or config_endpoint_url(endpoint),
            draft.region, endpoint.profile, exists,
            probe, leftover,
        )  # fmt: skip


async def dry_run_cp(request: Request) -> DryRun:
    """What :func:`._cp.copy` would do with ``request``'s state file: cp's own loop on
    :func:`._decide.decide`, acting by read-only questions (HeadObject, ListParts); then a
    start is probed as ``start``, a resume with ListParts."""
    with _nothing_changed():
        from ._cp import _already_running, conflicts_of, read_found, refusal
        from ._shard_journals import being_run
        from ._source import inspect_file

        state_path = request.state_file
        identity = await anyio.to_thread.run_sync(inspect_file, request.reads().path)
        refuse_source_as_state(state_path, identity.path)
        found = await anyio.to_thread.run_sync(read_found, state_path)
        if await anyio.to_thread.run_sync(being_run, state_path):
            raise _already_running(state_path)  # (as the run is: exit 3)
        conflicts = conflicts_of(found, request, identity)
        exists: Exists = "ask"
        source, learnt = Source(False, identity.size), Learnt()
        while (decision := decide(found, source, conflicts, learnt)).action in ("check", "resume"):
            assert isinstance(found, JournalState)
            if decision.action == "check":
                learnt, exists = await _check(found, request, learnt)
                continue
            resumed, learnt = await _dry_run_resume(found, request)
            if resumed is not None:
                return resumed
        if decision.action == "refuse":
            raise refusal(found, state_path, decision)
        done = decision.action == "done"  # the object is that upload's own: no_overwrite allows it
        # A path that does not exist, for dry_run_start's state-file check: cp replaces a
        # finished state file, or creates its directory.
        scratch = _existing_parent(state_path) / f".persevere-dry-run-{os.getpid()}"
        probed = replace(request, source=Named(identity.path), state_file=scratch,
                         no_overwrite=request.no_overwrite and not done)  # fmt: skip
        report = await dry_run_start(probed, exists)  # (its errors said once more, the same)
        return replace(report, action="check" if done else "start", state_file=str(state_path),
                       state=_state_words(found, decision, learnt, state_path))  # fmt: skip


async def _check(state: JournalState, request: Request, learnt: Learnt) -> tuple[Learnt, Exists]:
    """Is the object still the upload's own (and does the key exist)? Its file is cp's to
    check, reading it."""
    header = state.header
    if state.finished == "completed":
        checked = await recheck(state, request.state_file, None, request.endpoint,
                                options=request.transfer)  # fmt: skip
        why = checked.why.replace("from a stream", f"from {header.file_path}")  # (not read)
        exists = {"gone": False, "unreadable": None}.get(checked.outcome, True)
        return Learnt(checked.outcome == "same", why=why), exists
    # Gone, and every part recorded: did an earlier run complete it (and crash)?
    plan = planned(header, PartPlan)  # a stream's state file was refused (other_source)
    parts = [state.parts[n] for n in plan.part_numbers() if n in state.parts]
    ours: bool = False
    if len(parts) == plan.part_count:
        asking = recorded_session(header, request.endpoint, request.transfer, Call.FIRST)
        async with asking as session:
            ours = await session.holds(session.expected(parts), header.file_size)
    return Learnt(ours, upload_gone=True, why=learnt.why), "ask"


def _state_words(found: Found, decision: Decision, learnt: Learnt, path: Path) -> str:
    """What happens to the state file (the report's ``state``)."""
    if isinstance(found, HeaderTorn):
        return "its header line is torn (a crash): nothing to resume; replaced"
    if not isinstance(found, JournalState):
        return _new_state(path)
    if found.finished == "aborted":
        return "records an aborted upload: replaced"
    at = (found.outcome or {}).get("at", "?")
    was = f"records the upload completed at {at}" if found.finished else "in progress"
    if decision.action == "restart":
        return f"{was}, but {decision.why}: cp aborts that upload and starts again"
    if decision.action == "start":
        return f"{was}, but {decision.why}"
    if found.finished is None:  # gone: an earlier run completed it, and crashed
        return (
            f"{was}, but {learnt.why}: an earlier run completed it (the object is what its "
            "recorded parts make); cp records that and exits 0 if the file still gives them, "
            "else uploads again (as probed here)"
        )
    return (
        f"{was}, and the object is still its own (HeadObject): cp checks the file's identity, "
        "exits 0 if it is unchanged, else uploads again (as probed here)"
    )


async def _dry_run_resume(state: JournalState, request: Request) -> tuple[DryRun | None, Learnt]:
    """ListParts on the upload cp would resume (None and what was learnt, if it is gone)."""
    header = state.header
    state_path = request.state_file
    plan = planned(header, PartPlan, state_path)  # a stream's was refused (other_source)
    where = endpoint_of(header).overridden_by(request.endpoint)  # (reported)
    async with recorded_session(header, request.endpoint, request.transfer, Call.FIRST) as session:
        try:
            parts = await session.list_parts()
        except UploadGone:
            gone = f"upload {header.upload_id} no longer exists on S3 (ListParts)"
            return None, Learnt(upload_gone=True, why=gone)
        probe = f"ListParts: upload {header.upload_id} holds {len(parts)} part(s) on S3"
        exists = await refuse_existing(session)  # resume gives it up, as another writer's
    done = len(state.parts)
    return DryRun(
        "resume", header.file_path, header.file_size, header.bucket, header.key,
        plan.part_size, plan.part_count, header.checksum_algorithm, header.checksum_pinned,
        str(state_path), f"in progress: {done} of {plan.part_count} parts recorded; resumed",
        where.endpoint_url, where.region, where.profile, exists, probe,
    ), Learnt()  # fmt: skip


async def _probe_create(session: MultipartSession, request: Request) -> tuple[str, str | None]:
    """CreateMultipartUpload, then AbortMultipartUpload at once; shielded, so a Ctrl-C cannot
    leave the probe's upload behind unnoticed."""
    options = request.transfer
    with anyio.CancelScope(shield=True):
        with anyio.fail_after(PROBE_TIMEOUT_S):
            await session.create(request.object_options or {}, retry=options.policy(Call.FIRST))
        session.retry = options.policy(Call.CLEANUP)
        leftover: str | None = (
            f"persevere upload abort {shlex.quote(f's3://{session.bucket}/{session.key}')} "
            f"--upload-id {shlex.quote(session.upload_id)}"
        )
        why = f"no answer within {ABORT_TIMEOUT_S:.0f}s"
        with anyio.move_on_after(ABORT_TIMEOUT_S):  # (a stop waits for this at most)
            try:
                await session.abort()
                leftover = None
            except PersevereError as exc:
                why = str(exc)
        if leftover is not None:
            log.warning("the probe's upload could not be aborted (%s): %s", why, leftover)
    probe = (
        f"CreateMultipartUpload accepted (upload {session.upload_id}, no parts, aborted at "
        "once): the credentials, the bucket, s3:PutObject on the key and the object options"
    )
    return probe, leftover


def _check_new_state_file(path: Path) -> None:
    """What ``Journal.create`` would refuse, without creating anything."""
    require_regular(path)
    if path.exists():
        raise already_exists(path)
    parent = _existing_parent(path)
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise StateFileError(f"cannot create state file {path}: {parent} is not writable")


def _existing_parent(path: Path) -> Path:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _new_state(path: Path) -> str:
    if path.parent.is_dir():
        return "would be created"
    return f"would be created (and its directory, {path.parent})"
