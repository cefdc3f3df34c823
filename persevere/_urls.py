"""``s3://`` URLs, as the aws cli writes them: objects (``s3://bucket/key``, or a prefix
``s3://bucket/dir/`` that takes the file's name) and buckets with a prefix
(``upload list s3://bucket/backups/``, ``bench s3://bucket``).
"""

from __future__ import annotations

import re

from ._errors import UsageError

MAX_KEY_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
# What botocore accepts as a bucket name, checked before it is asked: ``s3://bucket:9000/k``
# (a port typed into the URL) was botocore's traceback. An ARN (an access point's) is not
# taken: persevere splits the URL at its first slash, which an access point's ARN holds.
_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")
# An access point's ARN (and an Outposts access point's), as botocore takes it for a bucket:
# requests then go to the access point's own endpoint.
_ACCESS_POINT = re.compile(
    r"arn:(aws)[^:]*:(s3|s3-object-lambda):[a-z\-0-9]*:[0-9]{12}:accesspoint[/:][a-zA-Z0-9\-.]{1,63}"
    r"|arn:(aws)[^:]*:s3-outposts:[a-z\-0-9]+:[0-9]{12}:outpost[/:][a-zA-Z0-9\-]{1,63}"
    r"[/:]accesspoint[/:][a-zA-Z0-9\-]{1,63}"
)
# A typed name holding one of these would hold a line break (as str.splitlines reads them):
# a character no listing shows as it is.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def require_utf8(bucket: str, key: str, what: str = "key") -> None:
    """A name that is not UTF-8 (bytes the shell passed through: ``s3://b/k\\xff``, or a file
    named so, given a prefix) cannot be sent: refused, rather than a traceback at the first
    request."""
    for name, text in (("bucket", bucket), (what, key)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"the {name} {text!r} is not UTF-8, so S3 cannot take it") from None
    if _ACCESS_POINT.fullmatch(bucket):
        return
    if bucket.startswith("arn:"):
        raise UsageError(
            f"{bucket!r} is an ARN but not an access point's: give the bucket's name "
            "(s3://BUCKET/KEY), or an access point's ARN (arn:aws:s3:REGION:ACCOUNT:"
            "accesspoint/NAME)"
        )
    if not _BUCKET.fullmatch(bucket):
        raise UsageError(
            f"the bucket name {bucket!r} is not one S3 takes (letters, digits, '.', '-' and "
            "'_' only): the endpoint is given with --endpoint-url, not in the s3:// URL"
        )


def require_typed(name: str, what: str = "key") -> None:
    """A key or prefix the user typed (``--s3-key``, ``--prefix``, a URL) that ends with
    whitespace or holds a line break: a character no listing shows (a CR from a file edited on
    Windows, a pasted space), the object then under a key no later lookup of the clean name
    finds. Refused. (A tree's file names are keys as they are: not checked.)"""
    if name[-1:].isspace() or not _LINE_BREAKS.isdisjoint(name):
        raise UsageError(
            f"the {what} {name!r} ends with whitespace or holds a line break, which no listing "
            "shows: give it without (a CR from a file edited on Windows? a pasted space?)"
        )


def check_destination(bucket: str, key: str) -> None:
    """Refuse, before any request, a destination S3 cannot take, or cannot be trusted to
    store where it is named.

    A ``.`` or ``..`` path segment (``..``, ``./x``, ``a/../b``) is a key AWS would store as
    written, but the aws cli, SDK path handling, browsers and proxies resolve it as a step
    through directories, and SeaweedFS refuses it with a bare InvalidRequest: the object would
    be refused, or land (or be read back) under another key. An empty segment (``a//b``,
    ``/x``, ``x/``) is merged away by servers that keep keys as file paths: SeaweedFS stores
    ``a//b`` as ``a/b`` (replacing an object there) and answers for either name, so no check
    after the upload tells (``x/`` it stores as ``x/x``). A backslash it stores as a slash:
    ``a\\b`` replaced the object ``a/b``, and ``cp DIR`` of a tree holding both said exit 0."""
    if not isinstance(bucket, str) or not isinstance(key, str):  # (the API's callers)
        raise UsageError(f"bucket and key must be strings, not {bucket!r} and {key!r}")
    if not bucket or not key:
        raise UsageError("bucket and key must not be empty")
    require_utf8(bucket, key)
    _require_short(key)
    if "" in key.split("/"):
        raise UsageError(
            "the key has an empty path segment (two slashes in a row, or a slash at its start "
            "or end), which servers that keep keys as file paths (SeaweedFS among them) merge "
            "away: the object would not be stored under this key; give a key without them"
        )
    if "\\" in key:
        raise UsageError(
            "the key has a backslash, which servers that keep keys as file paths (SeaweedFS "
            "among them) store as a slash: the object would be stored under another key, "
            "replacing the one there (a\\b is a/b); give a key without it"
        )
    if dots := next((segment for segment in key.split("/") if segment in (".", "..")), None):
        raise UsageError(
            f"the key has a '{dots}' path segment, which S3 tools and servers resolve (or "
            "refuse) as a step through directories: the object would not be stored under "
            "this key; give a key without '.' or '..' between slashes"
        )


def _split(url: str, expected: str, *, typed: bool = True) -> tuple[str, str, str]:
    """``s3://bucket/rest`` as ``url[5:].partition("/")``, refused without a bucket; an access
    point's ARN (``s3://arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME/KEY``, as the aws cli
    takes it) is the bucket whole. A ``typed`` URL ending in whitespace or holding a line break
    (a CR from a file edited on Windows, a pasted space) would name a key with a character no
    one sees: every later lookup of the clean URL misses."""
    if typed and (url[-1:].isspace() or not _LINE_BREAKS.isdisjoint(url)):
        raise UsageError(
            f"the URL {url!r} ends with whitespace or holds a line break, which no listing "
            "shows: give it without (a CR from a file edited on Windows? a pasted space?); a "
            "key that really ends so: the long flags (--s3-bucket, --s3-key) take it"
        )
    if not url.startswith("s3://"):
        bucket, slash, rest = "", "", ""
    elif point := _ACCESS_POINT.match(url, 5):
        bucket, slash, rest = point.group(), *url[point.end() :].partition("/")[1:]
        if point.end() < len(url) and url[point.end()] != "/":  # (it goes on: not one)
            bucket, slash, rest = url[5:].partition("/")
    else:
        bucket, slash, rest = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"not an S3 URL: {url!r} (expected {expected})")
    return bucket, slash, rest


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket`` or ``s3://bucket/prefix`` as ``(bucket, prefix)``; the prefix may be
    empty, and is kept as written (``backups/`` and ``backups`` are different prefixes)."""
    bucket, _, prefix = _split(url, "s3://bucket or s3://bucket/prefix")
    require_utf8(bucket, prefix, "prefix")
    return bucket, prefix


def parse_listed_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` with the key exactly as written, ``/`` at its end included: an
    upload ``upload list`` shows (another tool's, to ``dir/``), aborted by the URL given."""
    bucket, slash, key = _split(url, "s3://bucket/key", typed=False)
    if not slash or not key:
        raise UsageError(f"not an object URL: {url!r} (expected s3://bucket/key)")
    require_utf8(bucket, key)
    _require_short(key)  # (no listing shows a longer one: a key typed too long)
    return bucket, key


def _require_short(key: str) -> None:
    if (length := len(key.encode("utf-8", "surrogateescape"))) > MAX_KEY_BYTES:
        raise UsageError(
            f"the key is {length:,} bytes long (UTF-8): S3 takes at most {MAX_KEY_BYTES:,}"
        )


def parse_s3_url(url: str, name: str | None = None) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key).

    A URL ending in ``/`` names a prefix: given ``name`` (the local file's), the key is the
    prefix plus that name, as the aws cli and s5cmd do; without one it is refused. A bare
    ``s3://bucket`` is refused (a missing key is more likely a mistake than a wish).
    """
    bucket, slash, key = _split(url, "s3://bucket/key")
    if not slash or not key or key.endswith("/"):
        if not slash or not name:
            raise UsageError(f"not an object URL: {url!r} (expected s3://bucket/key)")
        key += name
    require_utf8(bucket, key)
    return bucket, key
