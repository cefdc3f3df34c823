"""An auditor's audit (2026-12-05, twenty-second): the Python API as a library user calls it
(README's "Python API", ``persevere/__init__.py``: every door, its results against what S3
holds, the exceptions each failure raises, progress sinks, two uploads at once, cancellation
then resume, ``UploadOptions`` and ``object_options`` at and past their edges, every path
argument as ``str``, ``Path`` and ``os.PathLike``) and ``persevere bench``. Each test is a
defect found, a strict xfail until it is fixed; numbered by severity (the order of the
report: a wrong object first, then an upload left unrecorded, then unclear errors), not by
their order in this file."""

from __future__ import annotations

import datetime
import math
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import persevere as api
from tests.conftest import persevere as cli
from tests.ruleproxy import Rule

MiB = 1024 * 1024


class _PathLike:
    """An ``os.PathLike`` that is no ``pathlib.Path`` (as a library user's own path type is)."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)

    def __fspath__(self) -> str:
        return self._path


def _source(tmp_path: Path, size: int = 6 * MiB) -> Path:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(size))
    return source


def _fast_failure() -> dict[str, object]:
    """Options that give up at once, so a value taken for the network fails in a second."""
    return {
        "retry": api.RetryPolicy(max_attempts=1, base_delay_s=0.01, max_delay_s=0.01),
        "first_call_attempts": 1,
    }


# -- 1: object_options given as a dict S3 cannot take: exit-0 object with other tags --------
def test_tagging_given_as_a_dict_is_not_stored_as_one_tag_named_after_the_dict(
    s3_env, bucket, s3_client, tmp_path
):
    """README: a wrong ``object_options`` value is a UsageError naming it, before anything is
    sent. ``upload_file_sync(..., object_options={"Tagging": {"team": "db"}})`` (a dict is how a
    Python user holds tags; boto3's own ``put_object_tagging`` takes them structured) returns
    an UploadResult, and the object carries ONE tag whose key is the text "{'team': 'db'}"
    and whose value is empty: exit 0 with an object other than asked, found only by reading
    its tags back. Expected: a UsageError naming Tagging (it takes "k=v&k2=v2"), or the dict
    encoded as those pairs; never a silent garbage tag."""
    source = _source(tmp_path, 1000)
    try:
        api.upload_file_sync(
            source, bucket, "tagged", tmp_path / "s.persevere",
            object_options={"Tagging": {"team": "db"}},
        )  # fmt: skip
    except api.UsageError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert "Tagging" in refused
        return
    tags = s3_client.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]
    assert tags == [{"Key": "team", "Value": "db"}]


# -- 4: UploadOptions out of their domain are taken for the network --------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("read_timeout_s", -1.0),
        ("connect_timeout_s", math.nan),
        ("max_bandwidth_bytes_s", -5.0),
    ],
    ids=["read_timeout_s=-1", "connect_timeout_s=nan", "max_bandwidth_bytes_s=-5"],
)
def test_upload_options_out_of_their_domain_are_a_usage_error_before_anything_is_sent(
    s3_env, bucket, s3_client, tmp_path, field, value
):
    """``UploadOptions.validate`` checks only ``concurrency`` and ``stall_timeout_s``. With
    ``read_timeout_s=-1`` every request "times out" ("Read timeout on endpoint URL"), with
    ``connect_timeout_s=nan`` "An HTTP Client raised an unhandled exception: cannot convert
    float NaN to integer": CreateMultipartUpload is retried 4 times and the caller gets
    ResumableError (exit 3) "cannot start the upload after 4 attempts ... check the endpoint
    and the network". ``max_bandwidth_bytes_s=-5`` is worse: the upload IS created, every part
    fails "Could not connect to the endpoint URL" 10 times over about a minute, and the caller
    gets ResumableError "the upload is intact and resumable", an upload billed on S3 that no
    resume can finish (the options are the same). Expected (README: "a wrong value ... is a
    UsageError (exit 2) naming it, before anything is sent"): UsageError naming the field,
    nothing created."""
    options = api.UploadOptions(**{field: value, **_fast_failure()})
    with pytest.raises(api.UsageError) as caught:
        api.upload_file_sync(
            _source(tmp_path), bucket, "k", tmp_path / "s.persevere",
            options=options, part_size=5 * MiB,
        )  # fmt: skip
    assert field.removesuffix("_s").split("_")[0] in str(caught.value)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- 6: object_options() takes only a pathlib.Path ------------------------------------------
@pytest.mark.parametrize("kind", ["str", "PathLike"])
def test_object_options_takes_the_file_as_every_other_door_does(tmp_path, kind):
    """Every door takes its paths as ``str | Path`` (os.PathLike too); README's example builds
    ``object_options(Path("/data/db.dump"), ...)`` beside ``upload_file_sync("/data/db.dump",
    ...)``. ``persevere.object_options("/data/db.dump")`` (the same string) raises a bare
    ``AttributeError: 'str' object has no attribute 'name'``; an os.PathLike the same. Expected:
    the options (content type guessed from the name), as for a Path."""
    source = _source(tmp_path, 10)
    given = str(source) if kind == "str" else _PathLike(source)
    assert api.object_options(given) == api.object_options(source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "keywords",
    [
        {"storage_class": 1},
        {"content_type": b"text/plain"},
        {"expected_bucket_owner": 123456789012},
        {"object_lock_legal_hold": True},
        {"object_lock_mode": "GOVERNANCE", "object_lock_retain_until": datetime.date(2030, 1, 1)},
    ],
    ids=["storage_class int", "content_type bytes", "owner int", "legal_hold bool", "date"],
)
def test_object_options_of_the_wrong_type_are_a_usage_error(tmp_path, keywords):
    """``object_options(Path(f), storage_class=1)``: AttributeError "'int' object has no
    attribute 'upper'"; ``content_type=b"text/plain"``: "'bytes' object has no attribute
    'isprintable'"; ``expected_bucket_owner=123456789012`` (an account id as a number):
    "'int' object has no attribute 'isdigit'"; ``object_lock_legal_hold=True``: "'bool' ...
    'upper'"; ``object_lock_retain_until=date(2030, 1, 1)`` (a date, where a datetime or text
    is taken): "'datetime.date' object has no attribute 'strip'". Expected: a UsageError
    naming the argument, as its wrong values of the right type get."""
    with pytest.raises(api.UsageError):
        api.object_options(_source(tmp_path, 10), **keywords)


# -- 7: the object_options dict's values are checked by botocore, raising its own errors -----
@pytest.mark.parametrize(
    "object_options",
    [
        {"Metadata": {"owner": "Zoë"}},
        {"Metadata": {"version": 2}},
        {"Expires": "next tuesday"},
        [("ContentType", "text/plain")],
    ],
    ids=["metadata not ascii", "metadata int", "Expires not a date", "a list of pairs"],
)
def test_object_options_values_create_multipart_upload_cannot_take_are_a_usage_error(
    s3_env, bucket, s3_client, tmp_path, object_options
):
    """README: an ``object_options`` name CreateMultipartUpload does not take is a UsageError
    naming it; its values are not checked. ``{"Metadata": {"owner": "Zoë"}}`` escapes as
    botocore's ``ParamValidationError`` ("Non ascii characters found in S3 metadata"),
    ``{"Metadata": {"version": 2}}`` as ``AttributeError: 'int' object has no attribute
    'encode'``, ``{"Expires": "next tuesday"}`` as ``ValueError: Invalid timestamp``, a list of
    pairs as ``TypeError: sequence item 0: expected str instance, tuple found``: none a
    PersevereError (no exit_code, no hint), and the CLI's own --metadata refuses the first
    with one line. Expected: UsageError naming the option, nothing created."""
    with pytest.raises(api.UsageError):
        api.upload_file_sync(
            _source(tmp_path, 1000), bucket, "k", tmp_path / "s.persevere",
            object_options=object_options,
        )  # fmt: skip
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- 8: verify's state_file of the wrong type ------------------------------------------------
@pytest.mark.parametrize("wrong", [5, b"s.persevere"], ids=["int", "bytes"])
def test_verify_state_file_of_the_wrong_type_is_a_usage_error(
    s3_env, bucket, s3_client, tmp_path, wrong
):
    """Audit 17 made a wrong type for every door's path a UsageError naming it ("file must be a
    path (str or os.PathLike), not bytes"), but not ``verify``'s ``state_file``:
    ``verify_sync(f, bucket, key, state_file=5)`` raises a bare ``TypeError: expected str,
    bytes or os.PathLike object, not int``, after a HeadObject. Expected: UsageError naming
    state_file."""
    source = _source(tmp_path, 1000)
    s3_client.put_object(Bucket=bucket, Key="k", Body=source.read_bytes())
    with pytest.raises(api.UsageError, match=r"state_file|state file"):
        api.verify_sync(source, bucket, "k", state_file=wrong)


# -- 5: a RetryPolicy out of its domain is found at the first failure, as a bare error -------
@pytest.mark.parametrize(
    "options",
    [
        {"retry": api.RetryPolicy(base_delay_s=-1.0, max_attempts=3), "first_call_attempts": 3},
        {"retry": api.RetryPolicy(max_delay_s=math.nan, max_attempts=3), "first_call_attempts": 3},
        {"retry": {"max_attempts": 2}},
        {"first_call_attempts": 1.5},
    ],
    ids=["base_delay_s=-1", "max_delay_s=nan", "retry a dict", "first_call_attempts=1.5"],
)
def test_retry_settings_out_of_their_domain_are_a_usage_error(s3_env, tmp_path, options):
    """``UploadOptions(retry=RetryPolicy(base_delay_s=-1))`` is accepted; the first failed call
    (here: an endpoint that refuses connections) logs "retrying in -0.2s" and then raises a
    bare ``ValueError: delay must be a non-negative number`` (``max_delay_s=nan``: "retrying
    in nans", the same ValueError): no exit code, no hint. On a good endpoint nothing shows
    until the first transient failure of a part, hours in, whose retry meets the same sleep.
    ``retry={"max_attempts": 2}`` (the dict the README says ``options`` itself may not be) is
    ``AttributeError: 'dict' object has no attribute 'patience_s'``;
    ``first_call_attempts=1.5`` logs "attempt 2 of 1.5". Expected: UsageError naming the
    setting, before anything is sent."""
    source = _source(tmp_path, 1000)
    with pytest.raises(api.UsageError):
        api.upload_file_sync(
            source, "audit22", "k", tmp_path / "s.persevere",
            options=api.UploadOptions(**options),
            endpoint=api.Endpoint("http://127.0.0.1:9"),
        )  # fmt: skip


# -- 10: bench without s3:DeleteObject: the way out names an upload that no longer exists -----
class _DeleteObject(Rule):
    """DeleteObject (a DELETE without ``?uploadId``): what an identity without
    s3:DeleteObject is refused."""

    def matches(self, method: bytes, target: bytes) -> bool:
        return method == b"DELETE" and "uploadId" not in urlsplit(target.decode("latin-1")).query


def test_bench_that_cannot_delete_its_object_names_the_object_not_an_upload_to_abort(
    rule_proxy, bucket, s3_client
):
    """``persevere bench s3://B --size 6MiB -c 1`` as an identity without s3:DeleteObject
    (README's permission table: bench needs it): the upload completes, DeleteObject is
    refused, exit 1 "cannot delete the bench object s3://B/persevere-bench/ID/part-8388608-c1:
    DeleteObject: AccessDenied", and the way out is "left behind: upload UPLOADID of ...:
    persevere upload abort --s3-bucket B --s3-key K --upload-id UPLOADID (and delete s3://B/K
    if it was completed)". The bench knows it was completed (CompleteMultipartUpload
    answered: the delete is what failed): the upload id is gone, the abort command aborts
    nothing (SeaweedFS answers it with success, AWS with NoSuchUpload), and what is left, the
    object, is only the parenthesis. Expected: the object named as what is left (delete it),
    no abort command for an upload that was completed."""
    env, proxy = rule_proxy
    proxy.rules.insert(0, _DeleteObject("DELETE", "", refuse=(403, "AccessDenied")))
    ran = cli(env, "bench", f"s3://{bucket}", "--size", "6MiB", "-c", "1")
    assert ran.returncode == 1, ran.stderr
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and keys[0] in ran.stderr, (keys, ran.stderr)
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "upload abort" not in ran.stderr, ran.stderr


# -- 12: a library call undoes the caller's gc.freeze() ---------------------------------------
def test_an_upload_does_not_unfreeze_what_the_caller_froze(s3_env, bucket, tmp_path):
    """Python's documentation has a pre-forking server call ``gc.freeze()`` before it forks,
    so the children's collections do not touch (and copy) the parent's pages. One
    ``persevere.upload_file_sync`` in that process (any door that opens a client) and
    ``gc.get_freeze_count()`` is 0: ``_s3.open_client`` freezes what botocore loaded and, as
    the client closes (``FROZEN_UNTIL_EXIT`` is the CLI's, False in a library caller's
    process), calls ``gc.unfreeze()``, which unfreezes everything, the caller's objects too.
    Expected: the caller's frozen objects stay frozen (persevere undoes only what it froze, or
    leaves the collector's permanent generation alone in a library caller's process)."""
    import gc

    keep = [[i] for i in range(1000)]  # tracked objects of the caller's
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen >= len(keep)
        api.upload_file_sync(_source(tmp_path, 1000), bucket, "k", tmp_path / "s.persevere")
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


# -- 9: checksum of the wrong type ------------------------------------------------------------
@pytest.mark.parametrize("checksum", [5, 5.0], ids=["int", "float"])
def test_a_checksum_of_the_wrong_type_is_a_usage_error(s3_env, bucket, tmp_path, checksum):
    """``upload_file_sync(f, b, k, s, checksum=5)`` raises a bare ``AttributeError: 'int' object
    has no attribute 'upper'`` where ``checksum="none"`` is the UsageError "unknown checksum
    algorithm 'none' (choose from CRC64NVME, ...)" and ``max_parts="5"`` the UsageError "max
    parts must be a whole number". Expected: a UsageError naming checksum."""
    with pytest.raises(api.UsageError, match="checksum"):
        api.upload_file_sync(
            _source(tmp_path, 1000), bucket, "k", tmp_path / "s.persevere", checksum=checksum
        )


# -- 11: bench rows report a part size no part had -------------------------------------------
@pytest.mark.anyio
async def test_bench_rows_report_the_parts_that_were_sent(s3_env, bucket):
    """``persevere bench s3://B --size 1MiB -c 1 --part-size 5MiB,6MiB`` (or ``--size 1.5MiB``
    with the default auto: "part 8.0 MiB") runs twice the same upload, one part of 1 MiB, and
    prints two rows, "1  5.0 MiB ..." and "1  6.0 MiB ...  <- fastest"; ``--json`` the same
    ``part_size`` 5242880 and 6291456. No part of 5 or 6 MiB was sent: the row names a setting
    that was not measured, and "fastest" picks between two runs of one setting (the
    docstring: "settings that resolve to the same values run once"). Expected: one row, its
    ``part_size`` the size of the parts sent (at most ``size``)."""
    from persevere._bench import BenchSettings, run_bench

    rows = await run_bench(bucket, BenchSettings(1 * MiB, [1], [5 * MiB, 6 * MiB]))
    assert [(row.part_size, row.size) for row in rows] == [(1 * MiB, 1 * MiB)]


# -- 3: Endpoint(ca_bundle=Path): an upload created, then a bare TypeError, no journal ------
def test_an_endpoint_whose_ca_bundle_is_a_path_leaves_no_upload_without_a_journal(
    s3_env, bucket, s3_client, tmp_path
):
    """``persevere.Endpoint(url, ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"))`` (a
    ``pathlib.Path``, as every other path the API takes may be) given to
    ``upload_file_sync``: CreateMultipartUpload succeeds, then writing the journal's header
    raises a bare ``TypeError: Object of type PosixPath is not JSON serializable``: no state
    file, no exit code, and the multipart upload stays on the bucket, billed, recorded
    nowhere (only ``upload list`` finds it). Expected: the Path taken as its text (the upload
    done), or a UsageError naming ca_bundle before anything is created; never an upload the
    caller was not told of."""
    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    endpoint = api.Endpoint(s3_env["AWS_ENDPOINT_URL"], ca_bundle=bundle)  # type: ignore[arg-type]
    state = tmp_path / "s.persevere"
    try:
        api.upload_file_sync(_source(tmp_path, 1000), bucket, "k", state, endpoint=endpoint)
    except api.UsageError as exc:
        refused = str(exc)
    else:
        refused = "ca_bundle"
    assert "ca_bundle" in refused or "CA" in refused, refused
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- 2: object_options botocore takes but JSON cannot: an upload created and recorded nowhere
@pytest.mark.parametrize(
    "object_options",
    [
        {"Expires": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)},
        {"ContentType": b"text/plain"},
    ],
    ids=["Expires a datetime", "ContentType bytes"],
)
def test_object_options_the_journal_cannot_hold_leave_no_upload_without_a_journal(
    s3_env, bucket, s3_client, tmp_path, object_options
):
    """``object_options={"Expires": datetime(2030, 1, 1, tzinfo=UTC)}`` (boto3's own type for
    that field: ``put_object(Expires=datetime)``; ObjectLockRetainUntilDate likewise, where
    the bucket has object lock) or ``{"ContentType": b"text/plain"}``: botocore sends
    CreateMultipartUpload and S3 creates the upload, then the journal's header cannot be
    written, ``TypeError: Object of type datetime is not JSON serializable`` (bytes the
    same): a bare TypeError, no state file, and a multipart upload billed on the bucket that
    nothing records. Expected: the value taken (a datetime as ISO 8601 text, as
    ``object_options(object_lock_retain_until=datetime)`` does), or a UsageError naming it
    before anything is created; never an upload the caller was not told of."""
    state = tmp_path / "s.persevere"
    try:
        api.upload_file_sync(
            _source(tmp_path, 1000), bucket, "k", state, object_options=object_options
        )
    except api.UsageError as exc:
        refused = str(exc)
    else:
        refused = next(iter(object_options))
    assert next(iter(object_options)) in refused, refused
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
