"""Options of the object being created (storage class, content type, metadata, tags, SSE...).

Parsed and validated once at ``start``, recorded in the journal header as botocore's
CreateMultipartUpload parameter names, so resume and complete use exactly the same ones.
``ExpectedBucketOwner`` and ``RequestPayer`` are special: S3 wants them on every request of
the upload, so :func:`per_request` returns them for UploadPart, ListParts, Complete, Abort and
HeadObject.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote, unquote

from ._errors import UsageError

StorageClass = Literal[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
]
SseMode = Literal["AES256", "aws:kms", "aws:kms:dsse"]
ObjectLockMode = Literal["GOVERNANCE", "COMPLIANCE"]
LegalHold = Literal["ON", "OFF"]
CannedAcl = Literal[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
]
# CreateMultipartUpload's object lock parameters: S3 applies them to the completed object.
LOCK_FIELDS = frozenset(
    {"ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"}
)


# CreateMultipartUpload's parameters -> the flag that gives each (the rest: :func:`as_flags`)
_FLAG_OF = {"StorageClass": "--storage-class", "ContentEncoding": "--content-encoding",
            "ServerSideEncryption": "--sse", "SSEKMSKeyId": "--sse-kms-key-id", "ACL": "--acl",
            "ExpectedBucketOwner": "--expected-bucket-owner", "RequestPayer": "--request-payer",
            "ObjectLockMode": "--object-lock-mode",
            "ObjectLockRetainUntilDate": "--object-lock-retain-until",
            "ObjectLockLegalHoldStatus": "--object-lock-legal-hold"}  # fmt: skip


def as_flags(options: dict[str, Any], file_name: str) -> list[str]:
    """The flags that give ``options`` again (:func:`build_object_options` read backwards), for
    a command that must make the same upload: the content type only if not the name's guess."""
    flags: list[str] = []
    for name, value in options.items():
        if name == "ContentType" and value != guess_content_type(file_name):
            flags += ["--content-type", value]
        elif name == "Metadata":
            for key, each in value.items():
                flags += ["--metadata", f"{key}={each}"]
        elif name == "Tagging":
            for pair in value.split("&"):
                key, _, each = pair.partition("=")
                flags += ["--tagging", f"{unquote(key)}={unquote(each)}"]
        elif name in _FLAG_OF:
            flags += [_FLAG_OF[name], str(value)]
    return flags


def check_object_options(given: object) -> None:
    """CreateMultipartUpload's extra parameters as the Python API may give them: a dict the
    journal can record (JSON) and S3 takes as meant, else a UsageError naming the field,
    before anything is created (a datetime ``Expires`` was an upload made, then a TypeError
    writing its journal: billed, recorded nowhere; a dict ``Tagging`` one tag named after
    the dict)."""
    if given is None:
        return
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise UsageError(f"object_options must be a dict of CreateMultipartUpload parameters, "
                         f"not {given!r}", param="object_options")  # fmt: skip
    if sse_c := sorted(name for name in given if name.startswith("SSECustomer")):
        raise UsageError(
            f"object_options {', '.join(sse_c)}: SSE-C (a key of your own for each request) is "
            "not supported: every part and every check would need the key, and a resumable "
            "upload would have to keep it on disk; use SSE-KMS (ServerSideEncryption "
            "'aws:kms', SSEKMSKeyId) or SSE-S3",
            param="object_options",
        )
    for name, value in given.items():
        if name == "Tagging" and not isinstance(value, str):
            raise UsageError(
                f"object_options Tagging takes text ('k=v&k2=v2'), not {value!r}: "
                "persevere.object_options(tagging=[...]) builds it", param="object_options"
            )  # fmt: skip
        if name == "Metadata" and isinstance(value, dict):
            seen: dict[str, str] = {}
            for key in value:
                _refuse_twice(str(key), seen, "object_options Metadata")
                seen[str(key)] = ""
        if name == "Metadata" and not (
            isinstance(value, dict)
            and all(isinstance(v, str) and isinstance(k, str) for k, v in value.items())
            and all(k.isascii() and v.isascii() for k, v in value.items())
        ):
            raise UsageError(f"object_options Metadata takes a dict of ASCII text keys and "
                             f"values (S3 stores them as headers), not {value!r}",
                             param="object_options")  # fmt: skip
        if name in ("Expires", "ObjectLockRetainUntilDate") and isinstance(value, str):
            from botocore.utils import parse_timestamp

            try:
                parse_timestamp(value)
            except (TypeError, ValueError):
                raise UsageError(f"object_options {name} is not a date: {value!r} (give ISO "
                                 "8601 text)", param="object_options") from None  # fmt: skip
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise UsageError(
                f"object_options {name} cannot be {type(value).__name__} {value!r}: give "
                "text, a number or a dict of text (a date as ISO 8601 text)",
                param="object_options",
            ) from None


def build_object_options(
    file: Path,
    *,
    storage_class: str | None = None,
    content_type: str | None = None,
    content_encoding: str | None = None,
    metadata: Iterable[str] = (),
    tagging: Iterable[str] = (),
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
    acl: str | None = None,
    expected_bucket_owner: str | None = None,
    request_payer: str | None = None,
    object_lock_mode: str | None = None,
    object_lock_retain_until: str | datetime | None = None,
    object_lock_legal_hold: str | None = None,
) -> dict[str, Any]:
    """CreateMultipartUpload parameters from the CLI's values; :class:`UsageError` if bad.

    Object lock (the bucket must have it enabled): ``object_lock_mode`` GOVERNANCE or
    COMPLIANCE with ``object_lock_retain_until`` (ISO 8601 date or date and time, UTC unless
    it says otherwise; in the future), and/or ``object_lock_legal_hold`` ON or OFF.
    """
    if not isinstance(file, str | os.PathLike):  # (the API's: a str as any other door takes)
        raise UsageError(f"file must be a path (str or os.PathLike), not {file!r}", param="file")
    file = Path(file)
    texts = {"storage_class": storage_class, "content_type": content_type,
             "content_encoding": content_encoding, "sse": sse, "sse_kms_key_id": sse_kms_key_id,
             "acl": acl, "expected_bucket_owner": expected_bucket_owner,
             "request_payer": request_payer, "object_lock_mode": object_lock_mode,
             "object_lock_legal_hold": object_lock_legal_hold}  # fmt: skip
    for name, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name} must be text, not {value!r}", param=name)
    if object_lock_retain_until is not None and not isinstance(
        object_lock_retain_until, str | datetime
    ):
        raise UsageError(
            f"object_lock_retain_until must be ISO 8601 text or a datetime, not "
            f"{object_lock_retain_until!r}",
            param="object_lock_retain_until",
        )
    for name, given in (("metadata", metadata), ("tagging", tagging)):
        if isinstance(given, str | bytes) or not all(isinstance(v, str) for v in given):
            raise UsageError(f"{name} must be a list of 'k=v' texts, not {given!r}", param=name)
    options: dict[str, Any] = {}
    if storage_class is not None:
        options["StorageClass"] = _one_of(storage_class, StorageClass, "storage class", upper=True)
    options["ContentType"] = _ascii(content_type, "--content-type") or guess_content_type(file.name)
    if content_encoding is not None:
        options["ContentEncoding"] = _ascii(content_encoding, "--content-encoding")
    if meta := _pairs(metadata, "--metadata"):
        for name, value in meta.items():
            _ascii(f"{name}={value}", "--metadata")
            if not _TOKEN.fullmatch(name):  # (SeaweedFS: SignatureDoesNotMatch, as if a bad key)
                raise UsageError(f"--metadata {name}={value}: the name goes in the HTTP header "
                                 f"x-amz-meta-{name}, whose name takes letters, digits and "
                                 "!#$%&'*+-.^_`|~ only")  # fmt: skip
        options["Metadata"] = meta
    if tags := _pairs(tagging, "--tagging"):
        options["Tagging"] = "&".join(
            f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items()
        )
    if sse is not None:
        options["ServerSideEncryption"] = _one_of(sse, SseMode, "--sse")
    if sse_kms_key_id is not None:
        if not (sse or "").startswith("aws:kms"):
            raise UsageError("--sse-kms-key-id needs --sse aws:kms")
        options["SSEKMSKeyId"] = sse_kms_key_id
    if acl is not None:
        options["ACL"] = _one_of(acl, CannedAcl, "--acl")
    if expected_bucket_owner is not None:
        if not (expected_bucket_owner.isdigit() and len(expected_bucket_owner) == 12):
            raise UsageError("--expected-bucket-owner must be a 12-digit AWS account id")
        options["ExpectedBucketOwner"] = expected_bucket_owner
    if request_payer is not None:
        if request_payer != "requester":
            raise UsageError(f"--request-payer must be 'requester', not {request_payer!r}")
        # A requester-pays bucket bills this account for the requests and the storage.
        options["RequestPayer"] = request_payer
    mode, until, legal_hold = object_lock_mode, object_lock_retain_until, object_lock_legal_hold
    if (mode is None) != (until is None):  # S3 wants both or neither
        raise UsageError(
            "--object-lock-mode and --object-lock-retain-until go together (a retention is a "
            "mode until a date)"
        )
    if mode is not None and until is not None:
        options["ObjectLockMode"] = _one_of(mode, ObjectLockMode, "--object-lock-mode", upper=True)
        try:  # 2030-01-31, 2030-01-31T12:00, 2030-01-31T12:00:00Z, ...+02:00 (naive: UTC)
            when = until if isinstance(until, datetime) else datetime.fromisoformat(until.strip())
        except ValueError:
            raise UsageError(
                f"--object-lock-retain-until wants an ISO 8601 date or date and time "
                f"(2030-01-31 or 2030-01-31T12:00:00Z), not {until!r}"
            ) from None
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        if when <= datetime.now(UTC):
            raise UsageError(f"--object-lock-retain-until {when.isoformat()} is not in the future")
        # Recorded in the journal as text; botocore accepts ISO 8601 for the timestamp.
        options["ObjectLockRetainUntilDate"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if legal_hold is not None:
        if (hold := legal_hold.upper()) not in get_args(LegalHold):
            raise UsageError(f"--object-lock-legal-hold must be ON or OFF, not {legal_hold!r}")
        options["ObjectLockLegalHoldStatus"] = hold
    return options


def _one_of(given: str, kind: object, what: str, *, upper: bool = False) -> str:
    """``given`` (upper-cased if ``upper``), if it is one of the ``Literal`` ``kind``'s."""
    choices: tuple[str, ...] = get_args(kind)
    value = given.upper() if upper else given
    if value not in choices:
        raise UsageError(f"unknown {what} {given!r} (one of {', '.join(choices)})")
    return value


# A compressed file is stored as the bytes it is: a Content-Encoding would make browsers,
# requests/urllib3, `curl --compressed` and CDNs hand back the *decompressed* bytes, another
# file than the one backed up. So only its type says what it is.
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


def guess_content_type(name: str) -> str:
    """``dump.sql`` -> application/sql; ``dump.sql.gz`` -> application/gzip (no encoding)."""
    guessed, encoding = mimetypes.guess_type(name)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header's name (RFC 9110)


def _ascii(value: str | None, flag: str) -> str | None:
    """A value S3 takes as an HTTP header (``x-amz-meta-*``, Content-Type): ASCII only, or
    botocore refuses it with a traceback (metadata), or it is stored garbled."""
    if value is not None and not (value.isascii() and value.isprintable()):
        raise UsageError(f"{flag} {value!r}: S3 sends it as an HTTP header, which takes "
                         "printable ASCII only: no control character (a CR from a file edited "
                         "on Windows?); a tag, --tagging, may be any UTF-8")  # fmt: skip
    return value


def _pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{flag} {item!r} is not UTF-8") from None
        pieces: list[str] = []  # (k=v&k2=v2 as the aws cli takes it; an `&` in a value kept)
        for piece in item.split("&") if flag == "--tagging" else [item]:
            if pieces and "=" not in piece:
                pieces[-1] += "&" + piece
            else:
                pieces.append(piece)
        for piece in pieces:
            key, sep, value = piece.partition("=")
            if not sep or not key:
                raise UsageError(f"{flag} wants key=value, got {piece!r}")
            _refuse_twice(key, result, flag)
            result[key] = value
    return result


def _refuse_twice(name: str, given: Mapping[str, str], flag: str) -> None:
    """A name given twice: one value would be lost. Metadata names are HTTP headers, which
    do not tell case (``Foo`` and ``foo`` are one header; sent twice, the request's signature
    no longer matches: SignatureDoesNotMatch, blamed on the credentials)."""
    fold = flag != "--tagging"
    same = [n for n in given if (n.lower() == name.lower() if fold else n == name)]
    if same:
        alike = "the same name (case does not count)" if fold else "the same key"
        raise UsageError(f"{flag} {same[0]!r} and {name!r} are {alike}: give each once",
                         param="metadata" if fold else "tagging")  # fmt: skip


def differing(given: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[str]:
    """The options ``given`` and ``recorded`` do not agree on, by name (tags in any order)."""

    def normal(name: str, value: Any) -> Any:
        return sorted(value.split("&")) if name == "Tagging" and isinstance(value, str) else value

    names = {*given, *recorded}
    return sorted(n for n in names if normal(n, given.get(n)) != normal(n, recorded.get(n)))


PER_REQUEST = ("ExpectedBucketOwner", "RequestPayer")


def per_request(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options every request of the upload must carry (not only CreateMultipartUpload)."""
    return {name: options[name] for name in PER_REQUEST if options and name in options}
