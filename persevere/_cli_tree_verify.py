"""``persevere verify DIR s3://BUCKET/PREFIX/``: the tree's flags, and its report."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_flags import ConcurrencyOpt, EndpointFlags, _help
from ._cli_run import _emitted, _fail, _progress, _reported, _run, failing
from ._cli_tree import ExcludeOpt, FollowOpt, IncludeOpt, TreeFlags
from ._errors import PersevereError, StateFileError, UsageError
from ._logs import one_line as shown
from ._urls import parse_bucket_url

log = logging.getLogger("persevere")


@dataclasses.dataclass(frozen=True)
class VerifyTreeFlags:
    """What only a directory takes (cp's walk flags, described for verify)."""

    include: Annotated[list[str] | None, _help(
        IncludeOpt, "A directory: check only the files whose path under it matches "
        "(repeatable; * matches across /).")] = None  # fmt: skip
    exclude: Annotated[list[str] | None, _help(
        ExcludeOpt, "A directory: leave out the files whose path under it matches "
        "(repeatable).")] = None  # fmt: skip
    follow_symlinks: Annotated[bool, _help(
        FollowOpt, "A directory: follow symbolic links (default: listed as not "
        "checked).")] = False  # fmt: skip
    concurrency: Annotated[int, _help(
        ConcurrencyOpt, "A directory: files checked at once (each holds an 8 MiB "
        "buffer).")] = 8  # fmt: skip

    @property
    def given(self) -> str | None:
        """The first walk flag given (None: none); --concurrency is harmless for a file."""
        return TreeFlags(self.include, self.exclude, self.follow_symlinks).given


def verify_tree_command(
    root: Path,
    url: str | None,
    *,
    state_file: Path | None,
    tree: VerifyTreeFlags,
    endpoint_flags: EndpointFlags,
    no_progress: bool,
    json_output: bool,
) -> None:
    from ._tree import locate_tree_state, prefix_of
    from ._tree_verify import TreeVerifyRequest, verify_tree

    if url is None:
        _fail(UsageError(f"{root} is a directory: give DIR s3://BUCKET/PREFIX/"))
    bucket, url_prefix = _reported(parse_bucket_url, url)
    prefix = prefix_of(url_prefix)
    root = Path(os.path.realpath(root.expanduser()))  # one name for it: the journal's
    endpoint = endpoint_flags.endpoint()
    try:
        journal = locate_tree_state(root, bucket, prefix, endpoint, state_file=state_file)
    except StateFileError as exc:  # (a damaged journal: the objects' checksums still tell)
        log.warning("%s; verified without it", exc.message)
        journal = root.parent / f"{root.name}.persevere"
    except PersevereError as exc:
        _fail(exc)
    request = TreeVerifyRequest(root, bucket, prefix, journal, tuple(tree.include or ()),
                                tuple(tree.exclude or ()), tree.follow_symlinks,
                                state_file is not None, tree.concurrency, endpoint)  # fmt: skip
    result = _run(verify_tree, request, _progress(not no_progress and not json_output, "verify"))
    failing(result.exit_code)
    _print(result, json_output)
    raise typer.Exit(result.exit_code)


_LABELS = {"mismatch": "MISMATCH", "missing": "missing", "unknown": "cannot tell"}


def _print(result: Any, json_output: bool) -> None:
    where = f"s3://{result.bucket}/{result.prefix}"
    counts = {o: result.count(o) for o in ("match", "mismatch", "missing", "unknown")}
    if _emitted({**dataclasses.asdict(result), "destination": where, "counts": counts,
                 "refused": [{"path": p, "why": w} for p, w in result.refused],
                 "exit_code": result.exit_code}, json_output):  # fmt: skip
        return
    lines = [f"{_LABELS[f.outcome]}: {f.path}: {f.reason}" for f in result.files
             if f.outcome != "match"]  # fmt: skip
    lines += [f"not checked: {path} ({why})" for path, why in result.refused]
    if result.only_in_s3 is None:
        lines.append(f"only in S3: not listed ({result.why_not_listed})")
    lines += [f"only in S3: s3://{result.bucket}/{key}" for key in result.only_in_s3 or []]
    only = f"; {len(result.only_in_s3):,} object(s) only in S3" if result.only_in_s3 else ""
    if result.nothing_checked and result.excluded:
        lines.append(f"--include/--exclude left out every file of {result.root} "
                     f"({result.excluded:,}): nothing was checked")  # fmt: skip
    elif result.nothing_checked and result.recorded and not result.only_in_s3:
        lines.append(f"{result.root} holds no file to check, yet its journal records "
                     f"{result.recorded:,} uploaded: is it the directory that was uploaded (a "
                     "disk not mounted)?")  # fmt: skip
    elif result.nothing_checked and not result.only_in_s3:
        lines.append(f"{result.root}: no file could be checked ({len(result.refused):,} not "
                     "checked): nothing is said to match")  # fmt: skip
    elif result.nothing_checked:
        lines.append(
            f"{result.root} holds no file to check, yet {where} holds objects: is it "
            "the directory that was uploaded (a disk not mounted)?"
        )
    lines.append(
        f"verified {result.root} against {where}: {len(result.files):,} file(s): "
        f"{counts['match']:,} same, {counts['mismatch']:,} differ, {counts['missing']:,} "
        f"missing, {counts['unknown']:,} cannot tell{only}"
    )
    typer.echo("\n".join(map(shown, lines)))  # (one line each, whatever a name holds)
