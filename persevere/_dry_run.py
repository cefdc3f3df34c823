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
real run would). Never an UploadPart or CompleteMultipartUpload.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ._completion import endpoint_of, session_of
from ._errors import PersevereError, StateFileError, UploadGone
from ._journal import JournalState, already_exists, read_state, require_regular
from ._object_options import per_request
from ._options import UploadOptions
from ._plan import MAX_PARTS, PartPlan
from ._retry import Call
from ._s3 import Endpoint, open_client, resolved_region
from ._session import MultipartSession
from ._upload import _prepare_start
from ._write_once import exists_error, key_exists

log = logging.getLogger("persevere")

PROBE_TIMEOUT_S = 60.0


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


async def dry_run_start(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    part_size: int | None = None,
    max_parts: int = MAX_PARTS,
    checksum: str | None = None,
    endpoint: Endpoint | None = None,
    object_options: dict[str, Any] | None = None,
    no_overwrite: bool = False,
    options: UploadOptions | None = None,
) -> DryRun:
    """``start_upload``'s checks and a Create+Abort probe; raises what start would raise."""
    options = options or UploadOptions()
    options.validate()
    identity, plan, algorithm, state_path = await anyio.to_thread.run_sync(
        _prepare_start, file, bucket, key, state_file, part_size, checksum, max_parts
    )
    await anyio.to_thread.run_sync(_check_new_state_file, state_path)
    endpoint = endpoint or Endpoint.from_environment(None, None, None)
    async with open_client(endpoint, options) as client:
        session = MultipartSession(
            client, bucket, key, None, algorithm, retry=options.policy(Call.FIRST),
            per_request=per_request(object_options), pinned=checksum is not None,
            no_overwrite=no_overwrite,
        )  # fmt: skip
        exists = await key_exists(session)
        if no_overwrite and exists:
            raise exists_error(session, uploaded=False)
        probe, leftover = await _probe_create(session, object_options or {}, options)
        region = endpoint.region or resolved_region(client)
    return DryRun(
        "start", str(identity.path), identity.size, bucket, key, plan.part_size,
        plan.part_count, algorithm.name, checksum is not None, str(state_path),
        _new_state(state_path), endpoint.endpoint_url, region, endpoint.profile, exists, probe,
        leftover,
    )  # fmt: skip


async def dry_run_cp(
    file: str | Path,
    bucket: str,
    key: str,
    state_file: str | Path,
    *,
    part_size: int | None = None,
    max_parts: int = MAX_PARTS,
    checksum: str | None = None,
    endpoint: Endpoint | None = None,
    object_options: dict[str, Any] | None = None,
    no_overwrite: bool = False,
    options: UploadOptions | None = None,
) -> DryRun:
    """What ``copy_file`` would do with this state file: start (probed as ``start``), resume
    (probed with ListParts), or check an upload completed earlier."""
    from ._cp import Given, _refuse_foreign
    from ._source import inspect_file

    state_path = Path(state_file)
    identity = await anyio.to_thread.run_sync(inspect_file, Path(file))
    state = await anyio.to_thread.run_sync(_read_existing, state_path)
    if state is not None:
        _refuse_foreign(state, state_path, identity, bucket, key)
        if state.finished != "aborted":  # refused as cp would (it finds a completed one done)
            given = Given(object_options, checksum, part_size, no_overwrite, max_parts)
            doing = "was uploaded" if state.finished == "completed" else "is being uploaded"
            given.refuse_other(state, state_path, doing)
    if state is None or state.finished == "aborted" or state.finished == "completed":
        # Completed earlier: the object is that upload's own, which no_overwrite allows.
        write_once = no_overwrite and (state is None or state.finished == "aborted")
        report = await dry_run_start(
            identity.path, bucket, key, _scratch_name(state_path), part_size=part_size,
            max_parts=max_parts, checksum=checksum, endpoint=endpoint,
            object_options=object_options, no_overwrite=write_once, options=options,
        )  # fmt: skip
        if state is None:
            return _with_state(report, "start", state_path, _new_state(state_path))
        if state.finished == "aborted":
            return _with_state(report, "start", state_path, "records an aborted upload: replaced")
        return _with_state(
            report, "check", state_path,
            f"records the upload completed at {(state.outcome or {}).get('at', '?')}: cp checks "
            "the object (HeadObject) and the file's identity, exits 0 if both are unchanged, "
            "else uploads again (as probed here)",
        )  # fmt: skip
    return await _dry_run_resume(state, state_path, endpoint, options or UploadOptions())


async def _dry_run_resume(
    state: JournalState, state_path: Path, endpoint: Endpoint | None, options: UploadOptions
) -> DryRun:
    header = state.header
    plan = header.plan(state_path)
    assert isinstance(plan, PartPlan)  # a stream's state file was refused (other_source)
    where = endpoint_of(header).overridden_by(endpoint)
    async with open_client(where, options) as client:
        session = session_of(client, header, options.policy(Call.FIRST))
        try:
            parts = await session.list_parts()
            probe = f"ListParts: upload {header.upload_id} holds {len(parts)} part(s) on S3"
        except UploadGone:
            probe = (
                f"ListParts: upload {header.upload_id} no longer exists on S3: cp would abort "
                "what is left and start again"
            )
        exists = await key_exists(session)
    done = len(state.parts)
    return DryRun(
        "resume", header.file_path, header.file_size, header.bucket, header.key,
        plan.part_size, plan.part_count, header.checksum_algorithm, header.checksum_pinned,
        str(state_path), f"in progress: {done} of {plan.part_count} parts recorded; resumed",
        where.endpoint_url, where.region, where.profile, exists, probe,
    )  # fmt: skip


async def _probe_create(
    session: MultipartSession, object_options: dict[str, Any], options: UploadOptions
) -> tuple[str, str | None]:
    """CreateMultipartUpload, then AbortMultipartUpload at once; shielded, so a Ctrl-C cannot
    leave the probe's upload behind unnoticed."""
    leftover = None
    with anyio.CancelScope(shield=True), anyio.fail_after(PROBE_TIMEOUT_S):
        await session.create(object_options, retry=options.policy(Call.FIRST))
        session.retry = options.policy(Call.CLEANUP)
        try:
            await session.abort()
        except PersevereError as exc:
            leftover = (
                f"persevere upload abort s3://{session.bucket}/{session.key} "
                f"--upload-id {session.upload_id}"
            )
            log.warning("the probe's upload could not be aborted (%s): %s", exc, leftover)
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


def _read_existing(path: Path) -> JournalState | None:
    """cp's view of the state file, read only (an empty one counts as none)."""
    require_regular(path)  # refused as cp refuses it
    if not path.exists() or path.stat().st_size == 0:
        return None
    return read_state(path)


def _scratch_name(state_path: Path) -> Path:
    """A path that does not exist, for :func:`dry_run_start`'s state-file check: cp replaces
    a finished state file, or creates its directory."""
    return _existing_parent(state_path) / f".persevere-dry-run-{os.getpid()}"


def _with_state(report: DryRun, action: str, state_path: Path, state: str) -> DryRun:
    from dataclasses import replace

    return replace(report, action=action, state_file=str(state_path), state=state)
