"""Review of the one pipeline (issue 25: ``_pipeline.run`` and its two kinds, 6a757bd..10b8888)
against the four paths it replaced (6a7601a): what a real run against SeaweedFS showed."""

from __future__ import annotations

import json

from tests.conftest import persevere as cli
from tests.ruleproxy import Rule

MiB = 1024 * 1024


def test_an_empty_shard_sends_no_part_of_the_others(rule_proxy, bucket, make_file, tmp_path):
    """A shard given no part (``--shard 2/3`` of an upload of 2 parts made without
    ``--shards``, as a Slurm array or an Indexed Job larger than the parts gives) has nothing
    to send. Its empty range was read as "no range": the shard sent every part still missing,
    the other shards' too, twice the bytes on the wire when they run at once (found at
    6a7601a and at 10b8888, where its progress total also became the whole file's)."""
    env, proxy = rule_proxy
    file, state = make_file(7 * MiB, seed=251), tmp_path / "s"
    proxy.rules.append(Rule("PUT", "partNumber", refuse=(403, "AccessDenied"), value="2"))
    started = cli(env, "upload", "start", file, f"s3://{bucket}/k", "--state-file", state,
                  "--part-size", "5MiB", "-c", "1", "--no-progress")  # fmt: skip
    assert started.returncode == 1, started.stderr  # part 1 recorded, part 2 refused
    proxy.rules.clear()
    proxy.matched.clear()
    proxy.rules.append(Rule("PUT", "partNumber"))  # counts every UploadPart from here on
    shard = cli(env, "upload", "shard", "--state-file", state, "--shard", "2/3", "--no-progress",
                "--json")  # fmt: skip
    assert shard.returncode == 0, shard.stderr
    assert "Traceback" not in shard.stderr
    assert proxy.matched["PUT partNumber"] == 0, shard.stderr
    assert json.loads(shard.stdout)["bytes_sent"] == 0
    done = cli(env, "upload", "resume", "--state-file", state, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert proxy.matched["PUT partNumber"] == 1  # part 2, sent once, by the resume
