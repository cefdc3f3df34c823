"""The commands that look, check and clean up: ``upload abort``, ``upload list``, ``upload
status``, ``verify`` and ``bench``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_flags import (
    BucketUrlArg,
    DurationOpt,
    EndpointFlags,
    FileArg,
    JsonOpt,
    ListPayerFlags,
    MaxPartsOpt,
    NoProgressOpt,
    ObjectUrlArg,
    PayerFlags,
    _bucket_url,
    _checked,
    _part_size,
    _target,
    is_directory,
    one_file,
)
from ._cli_run import _emitted, _progress, _reported, _run, _say, _usage_error, failing
from ._cli_tree_verify import VerifyTreeFlags, verify_tree_command
from ._errors import PersevereError
from ._logs import json_lines
from ._logs import one_line as shown
from ._options import MAX_CONCURRENCY
from ._units import format_duration, format_size, parse_size
from ._urls import check_destination, parse_listed_url, require_utf8

log = logging.getLogger("persevere")


def _levels(text: str) -> list[int]:
    """bench's --concurrency: comma-separated settings, each within --concurrency's range."""
    levels = [x.strip() for x in text.split(",") if x.strip()]
    if not levels or not all(x.isdigit() and 1 <= int(x) <= MAX_CONCURRENCY for x in levels):
        raise ValueError(f"not comma-separated whole numbers from 1 to {MAX_CONCURRENCY}: {text!r}")
    return [int(x) for x in levels]


@dataclasses.dataclass(frozen=True)
class BenchFlags:
    """What bench measures: its settings, checked before any request."""

    # fmt: off
    size: Annotated[str, typer.Option(
        "--size", help="Bytes uploaded per setting (generated, no file).")] = "1GiB"
    concurrency: Annotated[str, typer.Option(
        "--concurrency", "-c", help="Comma-separated settings to try.")] = "1,4,8,16"
    part_size: Annotated[str, typer.Option(
        "--part-size", help="Comma-separated part sizes, or 'auto'.")] = "auto"
    max_parts: MaxPartsOpt = 10_000
    # fmt: on

    def settings(self) -> Any:
        from ._bench import BenchSettings

        total = _checked(parse_size, self.size, flag="--size")
        levels = _checked(_levels, self.concurrency, flag="--concurrency")
        parts = _checked(lambda text: [_part_size(x) for x in text.split(",") if x.strip()],
                         self.part_size, flag="--part-size")  # fmt: skip
        return BenchSettings(total, levels, parts, self.max_parts)


def abort(
    url_arg: ObjectUrlArg = None,
    state_file: Annotated[Path | None, typer.Option(
        "--state-file", help="The journal of the upload to abort.")] = None,
    s3_bucket: Annotated[str | None, typer.Option(
        "--s3-bucket", help="With --s3-key and --upload-id (or s3://BUCKET/KEY --upload-id ID): "
        "an upload that has no state file (see 'upload list').")] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Object key.")] = None,
    upload_id: Annotated[str | None, typer.Option("--upload-id", help="Upload id.")] = None,
    flags: PayerFlags = PayerFlags(),
) -> None:  # fmt: skip
    """Abort an upload (S3 deletes its parts): by --state-file, or s3://BUCKET/KEY --upload-id
    ID (or --s3-bucket, --s3-key, --upload-id)."""
    from ._orphans import abort_by_id
    from ._upload import abort_upload

    if state_file is not None:
        if url_arg or s3_bucket or s3_key or upload_id:
            _usage_error("give either --state-file or s3://BUCKET/KEY --upload-id")
        header = _run(abort_upload, state_file, endpoint=flags.endpoint_flags.overrides())
        typer.echo(f"aborted upload {header.upload_id} of s3://{header.bucket}/{shown(header.key)}")
        return
    if url_arg is not None:
        if s3_bucket or s3_key:
            _usage_error(f"give {url_arg} or --s3-bucket/--s3-key, not both")
        s3_bucket, s3_key = _checked(parse_listed_url, url_arg)  # (dir/ as listed)
    elif s3_bucket and s3_key:
        _checked(require_utf8, s3_bucket, s3_key)
    if not s3_bucket or not s3_key or not upload_id:
        _usage_error("give --state-file, or s3://BUCKET/KEY and --upload-id")
    _run(abort_by_id, flags.where(s3_bucket), s3_key, upload_id)
    typer.echo(f"aborted upload {upload_id} of s3://{s3_bucket}/{shown(s3_key)}")


def list_uploads(
    url_arg: BucketUrlArg = None,
    s3_bucket: Annotated[str | None, typer.Option(
        "--s3-bucket", help="The bucket to look in.")] = None,
    prefix: Annotated[str | None, typer.Option(
        "--prefix", help="Only keys under this prefix.")] = None,
    older_than: DurationOpt = None,
    flags: ListPayerFlags = ListPayerFlags(),
    json_output: JsonOpt = False,
) -> None:  # fmt: skip
    """List multipart uploads in progress (their parts are billed until aborted):
    persevere upload list s3://BUCKET[/PREFIX]."""
    from ._orphans import list_uploads as list_in_progress

    bucket, under = _bucket_url(url_arg, s3_bucket, prefix)
    listing = _run(list_in_progress, flags.where(bucket), prefix=under, older_than_s=older_than)
    uploads = listing.uploads
    if _emitted({"bucket": bucket, "uploads": uploads}, json_output):
        return
    older = f" older than {format_duration(older_than)}" if older_than is not None else ""
    younger = "".join(f" ({n} {what}, not listed)" for n, what in ((listing.younger, "younger"),
                      (listing.undated, "of unknown age")) if n)  # fmt: skip
    if not uploads:
        typer.echo(f"no multipart uploads in progress{older} in s3://{bucket}/{under}{younger}")
        return
    typer.echo(f"{'initiated':<26} {'parts':>6} {'bytes':>12}  key / upload id")
    for u in uploads:
        when = u.initiated.isoformat(timespec="seconds") if u.initiated else "?"
        key = shown(u.key)  # (a newline in it: one row still)
        parts, held = ("?", "?") if u.bytes is None else (str(u.parts), format_size(u.bytes))
        why = f"  ({u.parts_unknown})" if u.parts_unknown else ""  # (one row still)
        typer.echo(f"{when:<26} {parts:>6} {held:>12}  {key}  {u.upload_id}{why}")
    total = sum(u.bytes or 0 for u in uploads)
    unknown = sum(u.bytes is None for u in uploads)
    unknown_s = f" ({unknown} of them with parts unknown, not counted)" if unknown else ""
    typer.echo(
        f"{len(uploads)} upload(s){older}, {format_size(total)} billed until aborted{unknown_s}"
        f"{younger}: persevere upload abort s3://{bucket}/KEY --upload-id ID"
    )


def status(
    url_arg: ObjectUrlArg = None,
    state_file: Annotated[Path | None, typer.Option(
        "--state-file", help="The journal of the upload.")] = None,
    json_output: JsonOpt = False,
    flags: PayerFlags = PayerFlags(),
) -> None:  # fmt: skip
    """Show what the state file knows and what S3's ListParts says; or, for s3://BUCKET/KEY,
    what S3 holds for that key (the object, and the uploads in progress to it)."""
    from ._upload import upload_status

    if (url_arg is None) == (state_file is None):
        _usage_error("give --state-file, or s3://BUCKET/KEY")
    if url_arg is not None:
        _key_status(url_arg, flags, json_output)
        return
    assert state_file is not None
    st = _run(upload_status, state_file, endpoint=flags.endpoint_flags.overrides())
    if _emitted(st, json_output):
        return
    h = st.header
    source = f"{h.file_path} ({format_size(h.file_size)}, {h.file_size} bytes)"
    done = f"{st.parts_done} of {st.part_count} done ({format_size(st.bytes_done)} of " \
           f"{format_size(h.file_size)})"  # fmt: skip
    if h.stream:
        expected = f", {h.expected_size:,} bytes expected" if h.expected_size else ""
        source = f"standard input (a stream{expected})"
        done = f"{st.parts_done} done ({format_size(st.bytes_done)})"
    lines = [
        f"state file:  {shown(str(st.state_file))}",
        f"file:        {shown(source)}",
        f"object:      s3://{h.bucket}/{shown(h.key)}",
        f"endpoint:    {h.endpoint_url or _configured(h) or 'AWS default'}  region: "
        f"{h.region or '-'}  profile: {h.profile or '-'}",
        f"upload id:   {h.upload_id}",
        f"parts:       {done}, part size {format_size(h.part_size)}, checksum "
        f"{h.checksum_algorithm}",
        f"created:     {h.created_at}",
    ]
    if st.outcome is not None:
        lines.append(f"state:       {st.outcome['type']} at {st.outcome.get('at', '?')}")
    elif st.running:
        lines.append("state:       in progress, being run now (another persevere process "
                     "holds its state file)")  # fmt: skip
    elif st.remote is not None and st.remote.completed:
        lines.append("state:       gone from S3, and the object at the key is the parts "
                     "recorded: completed by a run stopped before recording it (or by another "
                     "upload of the same bytes); 'persevere upload resume --state-file S' or "
                     "the same cp records it")  # fmt: skip
    elif st.remote is not None and st.remote.reachable and not st.remote.exists:
        lines.append("state:       not resumable: its multipart upload is gone from S3 "
                     "(persevere cp starts it again)")  # fmt: skip
    else:
        lines.append("state:       in progress (resumable)")
    remote = st.remote
    if remote is not None:
        if not remote.reachable:
            lines.append(f"S3:          not reachable ({remote.error})")
        elif remote.error:
            lines.append(f"S3:          {remote.error}")
        elif remote.completed:
            lines.append("S3:          the multipart upload is gone; the object at the key "
                         "is its parts")  # fmt: skip
        elif not remote.exists:
            lines.append("S3:          the multipart upload no longer exists")
        else:
            held = f"S3:          {remote.parts} parts ({format_size(remote.bytes)})"
            if remote.unrecorded and st.running:  # (their answers on their way)
                held += f"; {remote.unrecorded} of them being recorded"
            elif remote.unrecorded:  # taken by S3, their answers lost as the upload stopped
                it, matches = ("it", "it matches") if remote.unrecorded == 1 else \
                              ("them", "they match")  # fmt: skip
                held += (f"; {remote.unrecorded} of them not in the state file yet (taken by "
                         f"S3 as the upload stopped): the next resume keeps {it} if {matches} "
                         "the file")  # fmt: skip
            if remote.outside:
                held += (f"; {remote.outside} numbered past the plan's last part (not this "
                         "upload's: another client's, left out of the object)")  # fmt: skip
            lines.append(held)
    typer.echo("\n".join(lines))


def _key_status(url: str, flags: PayerFlags, json_output: bool) -> None:
    """``upload status s3://BUCKET/KEY``: the object, and the uploads in progress to it."""
    from ._orphans import Where, key_status

    endpoint = flags.endpoint_flags.endpoint()  # (checked before the URL)
    bucket, key = _checked(parse_listed_url, url)  # (dir/ as listed)
    st = _run(key_status, Where(bucket, endpoint, flags.request_payer), key)
    if _emitted(st, json_output):
        return
    if st.exists is None:
        held = "cannot tell (HeadObject refused: s3:GetObject)"
    elif not st.exists:
        held = "does not exist"
    else:
        when = st.last_modified.isoformat(timespec="seconds") if st.last_modified else "?"
        held = (
            f"{format_size(st.size or 0)} ({st.size} bytes), ETag {st.etag}, "
            f"{st.checksum or 'no checksum'}, modified {when}"
        )
    lines = [f"object:      s3://{bucket}/{shown(key)}", f"S3:          {held}"]
    if st.uploads is None:
        lines.append("uploads:     cannot tell (ListMultipartUploads refused)")
    elif not st.uploads:
        lines.append("uploads:     none in progress")
    for u in st.uploads or []:
        started = u.initiated.isoformat(timespec="seconds") if u.initiated else "?"
        held = f"parts unknown ({u.parts_unknown})"
        if u.bytes is not None:
            held = f"{u.parts} parts ({format_size(u.bytes)}) billed until aborted"
        lines.append(f"upload:      {u.upload_id} started {started}, {held}")
    typer.echo("\n".join(lines))


def verify(
    file_arg: FileArg = None,
    url_arg: ObjectUrlArg = None,
    s3_bucket: Annotated[str | None, typer.Option("--s3-bucket", help="Bucket.")] = None,
    s3_key: Annotated[str | None, typer.Option("--s3-key", help="Object key.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="The local file.")] = None,
    state_file: Annotated[Path | None, typer.Option(
        "--state-file",
        help="The upload's journal: lets verify name the part. A directory: the tree's journal "
        "from cp (default: where cp keeps it).")] = None,
    endpoint_flags: EndpointFlags = EndpointFlags(),
    no_progress: NoProgressOpt = False,
    json_output: JsonOpt = False,
    tree: VerifyTreeFlags = VerifyTreeFlags(),
) -> None:  # fmt: skip
    """Check an object against a local file without downloading it; a directory (DIR
    s3://BUCKET/PREFIX/): each file against its object PREFIX/PATH.

    Exit 0: same bytes; 1: the object or its bucket does not exist, or another error (access
    refused, S3 unreachable); 2: bad input; 4: they differ (the first differing part is named
    when known); 5: cannot tell, and why (e.g. an SSE-KMS ETag and no checksum, or part sizes
    the endpoint will not tell). A directory: 4 if any file differs or has no object (a
    missing object is a difference there, not an error), else 5 if any cannot tell.
    """
    from ._request import names_stdin, resolve_source
    from ._verify import verify_object

    given = one_file(file_arg, file, "--file")
    if given is not None and is_directory(given):
        if s3_bucket or s3_key:
            _usage_error("a directory takes s3://BUCKET/PREFIX/, not --s3-bucket/--s3-key")
        verify_tree_command(given, url_arg, state_file=state_file, tree=tree,
                            endpoint_flags=endpoint_flags, no_progress=no_progress,
                            json_output=json_output)  # fmt: skip
        return
    if tree.given:
        _usage_error(f"{tree.given} is for a directory; {given} is not one", tree.given)
    if names_stdin(given):  # (-, /dev/stdin: a file redirected in is verified as that file)
        source = _reported(resolve_source, given)
        if source.stream:
            _usage_error("verify needs the path of a file, not - (standard input)", "FILE")
        given = source.path
    local, bucket, key = _target(given, url_arg, s3_bucket, s3_key, "--file")
    _checked(check_destination, bucket, key)  # (a key cp would not write: no object of ours)
    endpoint = endpoint_flags.endpoint()
    sink = _progress(not no_progress and not json_output, "verify")
    result = _run(
        verify_object, local, bucket, key, endpoint=endpoint, state_file=state_file, progress=sink
    )
    document = {"bucket": bucket, "key": key, "file": str(local), **dataclasses.asdict(result)}
    failing(result.exit_code)
    if not _emitted(document, json_output):
        label = {"match": "match", "mismatch": "MISMATCH"}.get(result.outcome, "cannot tell")
        typer.echo(shown(f"{label}: s3://{bucket}/{key} vs {local}: {result.reason}"))
    raise typer.Exit(result.exit_code)


def bench(
    url_arg: BucketUrlArg = None,
    s3_bucket: Annotated[str | None, typer.Option(
        "--s3-bucket", help="A bucket you may write to.")] = None,
    flags: BenchFlags = BenchFlags(),
    endpoint_flags: EndpointFlags = EndpointFlags(),
    json_output: JsonOpt = False,
) -> None:  # fmt: skip
    """Measure upload speed to your endpoint per --concurrency / --part-size setting:
    persevere bench s3://BUCKET[/PREFIX].

    Uploads generated data under [PREFIX/]persevere-bench/ and deletes every object afterwards
    (or aborts the upload if a run fails or is interrupted), so nothing is left behind.
    A second Ctrl-C gives that cleanup a few more seconds; a third exits at once, printing
    the exact command that removes what is left.
    """
    from ._bench import CLEANUP_TIMEOUT_S, BenchLeftover, format_table, run_bench

    bucket, prefix = _bucket_url(url_arg, s3_bucket, None)
    under = f"{prefix.rstrip('/')}/persevere-bench/" if prefix.strip("/") else "persevere-bench/"
    _reported(check_destination, bucket, f"{under}part")  # its keys, as cp's: before any request

    def show(row: Any) -> None:
        # not under -q; with --log-format json, bench's own log line says it
        if not json_output and not json_lines() and log.isEnabledFor(logging.WARNING):
            _say(
                f"c={row.concurrency:<3} part {format_size(row.part_size):>9}: "
                f"{row.mb_per_s:8.1f} MB/s"
            )

    settings = flags.settings()
    endpoint = endpoint_flags.endpoint()
    leftovers: dict[str, BenchLeftover] = {}
    rows = _run(
        lambda: run_bench(
            bucket, settings, endpoint=endpoint, on_row=show, leftovers=leftovers, key_prefix=under
        ),
        left_behind=lambda: [_removal(item) for item in list(leftovers.values())],
        grace_s=CLEANUP_TIMEOUT_S,
    )
    if not _emitted({"bucket": bucket, "size": settings.size, "rows": rows}, json_output):
        typer.echo(format_table(rows))


def _removal(item: Any) -> str:
    """The exact command that removes a bench upload the bench could not clean up."""
    bucket, key = shlex.quote(item.bucket), shlex.quote(item.key)
    if item.completed:  # (the delete failed: the object is what is left, no upload)
        return (
            f"the bench object s3://{item.bucket}/{item.key}: delete it (s3:DeleteObject; "
            f"aws s3 rm s3://{item.bucket}/{item.key})"
        )
    if item.upload_id is None:
        return (
            f"an upload of s3://{item.bucket}/{item.key} may have been created: "
            f"persevere upload list --s3-bucket {bucket} --prefix {key}"
        )
    command = (
        f"upload {item.upload_id} of s3://{item.bucket}/{item.key}: persevere upload abort "
        f"--s3-bucket {bucket} --s3-key {key} --upload-id {shlex.quote(item.upload_id)}"
    )
    if item.completing:
        command += f" (and delete s3://{item.bucket}/{item.key} if it was completed)"
    return command


def _configured(header: Any) -> str | None:
    """The endpoint URL the recorded profile's config gives (the journal records none then:
    resume reads the profile again), said as such."""
    from ._completion import endpoint_of
    from ._s3 import config_endpoint_url

    with contextlib.suppress(PersevereError, OSError, ValueError):
        if url := config_endpoint_url(endpoint_of(header)):
            return f"{url} (the profile's endpoint_url)"
    return None
