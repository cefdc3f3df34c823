"""``s3://`` URLs where a bucket (and a prefix) is meant, as the aws cli writes them.

Object URLs (``s3://bucket/key``) are read by ``_verify.parse_s3_url``; this is the other
shape: ``upload list s3://bucket/backups/``, ``bench s3://bucket``.
"""

from __future__ import annotations

from ._errors import UsageError


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket`` or ``s3://bucket/prefix`` as ``(bucket, prefix)``; the prefix may be
    empty, and is kept as written (``backups/`` and ``backups`` are different prefixes)."""
    bucket, _, prefix = url[5:].partition("/") if url.startswith("s3://") else ("", "", "")
    if not bucket:
        raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket or s3://bucket/prefix)")
    return bucket, prefix
