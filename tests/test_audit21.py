"""An operator's audit (2026-12-05, twenty-first): persevere tried as a real user, not root,
from a fresh install (the wheel in a venv of alice's own): permissions that bite (an
unreadable file or directory, a directory not writable, a journal left by root's cron job, a
shared sticky directory, HOME and XDG_STATE_HOME unwritable), signals and `kill -9` as that
user. The suite runs as root, where `chmod 000` does not stop a read, so a refusal is made by
the function that meets it (as tests/test_tree_review.py does). Each test is a defect found, a
strict xfail until it is fixed."""

from __future__ import annotations

import json
import os

from tests.conftest import persevere as cli
from tests.test_tree import clean, write


def _refusing_scandir(monkeypatch, module, name: str) -> None:
    """``os.scandir`` in ``module`` refuses the directory ``name`` as it does for a user who
    may not list it (`lost+found` on a mounted disk: root's, mode 0700)."""
    real = os.scandir

    def scandir(path):
        if os.path.basename(str(path)) == name:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(module.os, "scandir", scandir)


def test_a_tree_journal_planted_by_another_user_does_not_make_exit_0_without_objects(
    s3_env, bucket, s3_client, tmp_path
):
    # /tmp (or /var/tmp, /dev/shm, a cluster's shared scratch) is sticky and world-writable.
    # bob, another local user with no access to the bucket, writes /tmp/adir.persevere before
    # alice's first `persevere cp /tmp/adir s3://alb/adir/`: a tree header for that
    # destination and a "done" line per file with the identity `stat` gives him (size, times,
    # inode, device: no read permission needed; the files are 0600), any ETag and checksum,
    # mode 0666. alice's run appends to it and prints "uploaded: s3://alb/adir/: 2 file(s):
    # 0 sent, 0 sent again, 2 unchanged, 0 failed", exit 0: no object exists (verify: "2
    # missing", exit 4). A journal another user owns (or may write) is not to be trusted:
    # refuse it, or keep this user's journal elsewhere; a file's FILE.persevere the same.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    tree = shared / "adir"
    write(tree / "a", 10, 1)
    write(tree / "b", 10, 2)
    endpoint = s3_env["AWS_ENDPOINT_URL"]
    lines = [{"type": "header", "format": "persevere-tree", "version": 1, "root": str(tree),
              "bucket": bucket, "prefix": "adir/", "endpoint_url": endpoint,
              "checksum_algorithm": "CRC64NVME", "created_at": "2026-12-05T11:00:00+00:00",
              "tool_version": "0.1.0", "object_options": None, "profile": None,
              "config_endpoint_url": None}]  # fmt: skip
    for name in ("a", "b"):
        st = os.stat(tree / name)
        lines.append({"type": "done", "rel": name, "key": f"adir/{name}", "size": st.st_size,
                      "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                      "inode": st.st_ino, "device": st.st_dev, "etag": '"' + "0" * 32 + '"',
                      "checksum": "AAAAAAAAAAA="})  # fmt: skip
    planted = shared / "adir.persevere"
    planted.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    planted.chmod(0o666)
    os.chown(planted, 65534, 65534)  # bob's (nobody's here)
    result = clean(cli(s3_env, "cp", tree, f"s3://{bucket}/adir/", "--json"))
    if result.returncode == 0:
        for name in ("a", "b"):
            s3_client.head_object(Bucket=bucket, Key=f"adir/{name}")  # (404: exit 0, no object)


def test_an_unlistable_directory_left_out_with_exclude_does_not_fail_the_tree(
    s3_env, bucket, tmp_path, monkeypatch
):
    # A user's `cp /data s3://b/p/` of a mounted disk meets root's lost+found (0700): "failed:
    # lost+found: cannot list: Permission denied", exit 1, "run the same command again". The
    # README's way out for a file that fails alone is --exclude; `--exclude 'lost+found/'`
    # (a pattern ending in / is every file under that directory) changes nothing: the walk
    # lists every directory before filtering, so the run is exit 1 forever and a supervisor's
    # "run until it exits 0" never ends. verify DIR says "cannot tell", exit 5, the same way.
    from persevere import _tree_walk

    root = tmp_path / "data"
    write(root / "a", 10, 1)
    (root / "lost+found").mkdir()
    _refusing_scandir(monkeypatch, _tree_walk, "lost+found")
    url = f"s3://{bucket}/p/"
    sent = clean(cli(s3_env, "cp", root, url, "--exclude", "lost+found/", "--json"))
    checked = clean(cli(s3_env, "verify", root, url, "--exclude", "lost+found/", "--json"))
    monkeypatch.undo()
    assert json.loads(sent.stdout).get("failed") == [], sent.stdout
    assert sent.returncode == 0, sent.stderr
    assert checked.returncode == 0, checked.stdout


def test_install_completion_where_it_cannot_write_is_one_line_not_a_traceback(tmp_path):
    # `persevere --install-completion bash` as a user whose HOME cannot take it (a read-only
    # home in a container, a ~/.bashrc owned by root or made a directory, HOME not a
    # directory): typer's installer raises, and the user gets a 40-line rich traceback
    # (IsADirectoryError / PermissionError / FileExistsError), exit 1. One line, as every other
    # error, saying what could not be written (and --show-completion to do it by hand).
    (tmp_path / "h1" / ".bashrc").mkdir(parents=True)  # ~/.bashrc not a file it can write
    (tmp_path / "h2").write_text("")  # HOME not a directory
    for home in ("h1", "h2"):
        env = {"HOME": str(tmp_path / home), "SHELL": "/bin/bash"}
        result = cli(env, "--install-completion", "bash")
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr[-2000:]


def test_a_journal_under_state_dir_is_found_again_through_another_spelling_of_the_path(
    s3_env, bucket, tmp_path
):
    # Beside the file, the journal is found whatever path names the file (a symbolic link to
    # its directory, a `..`). Under --state-dir (the README's systemd and cron examples) or
    # $XDG_STATE_HOME (a user's file in a directory not writable: /srv, a shared dataset) the
    # journal's name is a digest of the path as typed: `cp /srv/data/f` killed after 2 of 5
    # parts, then `cp ~/data-link/f` (the same file, the same destination) starts another
    # upload, sends every part again and leaves the first upload billed in `upload list`;
    # the next run by the first spelling resumes that one. The digest should be of the
    # resolved path (or the file's device and inode), as FILE.persevere beside it is.
    real = tmp_path / "real"
    write(real / "f", 100, 1)
    (tmp_path / "link").symlink_to(real)
    state_dir = tmp_path / "state"
    url = f"s3://{bucket}/f"
    first = cli(s3_env, "cp", real / "f", url, "--state-dir", state_dir, "--json")
    assert first.returncode == 0, first.stderr
    for spelling in (tmp_path / "link" / "f", real / ".." / "real" / "f"):
        again = cli(s3_env, "cp", spelling, url, "--state-dir", state_dir, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["state_file"] == json.loads(first.stdout)["state_file"]
        assert json.loads(again.stdout)["already_completed"], again.stdout
    assert len(list(state_dir.iterdir())) == 1, sorted(p.name for p in state_dir.iterdir())


def test_the_declared_dependency_floors_are_versions_persevere_runs_with():
    # The wheel says aiobotocore>=2.15, typer>=0.12, awscrt>=0.23. pip keeps what is already
    # installed when it satisfies them (a user's environment with s3fs, which pins aiobotocore,
    # or an older awscli's awscrt), and every command, `persevere --version` included, is then
    # a traceback. Installed as alice with exactly the floors (`pip install -c floors.txt
    # dist/*.whl`), then raising one at a time:
    #   awscrt 0.23..0.31: AttributeError: awscrt.checksums has no combine_crc64nvme (0.31) /
    #     XXHash (before 0.32), at import;
    #   typer 0.12..0.18: RuntimeError: Type not yet supported: typing.Literal['CRC64NVME', ...];
    #   aiobotocore 2.15..2.17 (botocore 1.35): TypeError: Got unexpected keyword argument
    #     'request_checksum_calculation' on the first upload.
    # With awscrt 0.32.0, typer 0.19.0, aiobotocore 2.18.0 (botocore 1.36.1), anyio 4.4.0,
    # tqdm 4.66.0, uvloop 0.19.0: cp, cp -, verify all exit 0 with the right object.
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        req = Requirement(dep)
        floors[req.name] = min(
            (Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")),
            default=Version("0"),
        )
    needed = {"awscrt": "0.32.0", "typer": "0.19.0", "aiobotocore": "2.18.0"}
    low = {name: str(floors[name]) for name, v in needed.items() if floors[name] < Version(v)}
    assert not low, f"floors persevere does not run with: {low}"


def test_a_journal_in_a_shared_group_directory_is_writable_by_the_group_as_umask_asks(
    s3_env, bucket, tmp_path
):
    # A team's setgid directory (2775, umask 002: every file the team makes is 0664). alice's
    # `cp big s3://b/k` is killed after 2 of 5 parts; bob, of the same group, runs the same
    # command: "persevere: error: cannot open state file /srv/team/big.persevere: Permission
    # denied", exit 1, no hint, every time (the journal is 0644 whatever the umask: os.open(...,
    # 0o644); --state-dir and a tree's DIR.persevere.d are 0700). bob can neither continue nor
    # abort the upload; only another --state-file, a new upload, with alice's left billed.
    # The journal should be created 0666 & ~umask, as the file beside it was.
    source = write(tmp_path / "big", 100, 1)
    old = os.umask(0o002)
    try:
        result = cli(s3_env, "cp", source, f"s3://{bucket}/k", "--json")
        state_dir = tmp_path / "team-state"
        other = cli(s3_env, "cp", source, f"s3://{bucket}/k2", "--state-dir", state_dir)
    finally:
        os.umask(old)
    assert result.returncode == 0 and other.returncode == 0, result.stderr + other.stderr
    journal = json.loads(result.stdout)["state_file"]
    assert oct(os.stat(journal).st_mode & 0o777) == oct(0o664), journal
    written = next(state_dir.iterdir())  # (under --state-dir too)
    assert oct(os.stat(written).st_mode & 0o777) == oct(0o664), written


def test_a_journal_it_may_not_write_names_a_way_out(s3_env, bucket, tmp_path, monkeypatch):
    # root's cron job ran `persevere cp /home/alice/r3/h s3://b/k` once and was killed; alice
    # runs the same command: "persevere: error: cannot open state file /home/alice/r3/h.persevere:
    # Permission denied", exit 1, and in --json "hint": null, "next_command": null (so do
    # `upload resume`, `upload abort --state-file`). A state file that cannot be *created*
    # says "give --state-dir (or --state-file) a writable place"; this one, which records an
    # upload whose parts are billed, says nothing: whose it is, that `upload abort s3://B/K
    # --upload-id ID` gives that upload up, or that another --state-file starts over.
    from persevere import _journal

    source = write(tmp_path / "h", 12 * 1024 * 1024, 1)
    state = tmp_path / "h.persevere"
    made = cli(s3_env, "upload", "start", source, f"s3://{bucket}/k", "--state-file", state,
               "--shards", "2", "--part-size", "5MiB")  # (created, nothing sent)  # fmt: skip
    assert made.returncode == 0, made.stderr
    real_open = os.open

    def refusing(path, flags, *args):
        if str(path) == str(state) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied")  # (root's 0644 journal, for alice)
        return real_open(path, flags, *args)

    monkeypatch.setattr(_journal.os, "open", refusing)
    result = clean(cli(s3_env, "cp", source, f"s3://{bucket}/k", "--json", "--part-size",
                       "5MiB"))  # fmt: skip
    monkeypatch.undo()
    answer = json.loads(result.stdout)
    assert answer.get("exit_code") == 1, (answer, result.stderr)
    assert answer["hint"], answer


def test_an_unlistable_directory_is_not_told_to_run_the_same_command_again(
    s3_env, bucket, tmp_path, monkeypatch
):
    # An unreadable file in cp DIR: exit 2, "fix or leave out (--exclude) the files said, then
    # run the same command again". An unreadable directory (chmod 000, 0711, or 0444: its
    # files "cannot read"): exit 1, "N file(s) not uploaded; run the same command again
    # (files done are not sent again)": the advice for a transient failure, for a permission
    # that will refuse every run the same way.
    from persevere import _tree_walk

    root = tmp_path / "d"
    write(root / "a", 10, 1)
    write(root / "sub" / "b", 10, 2)
    _refusing_scandir(monkeypatch, _tree_walk, "sub")
    result = clean(cli(s3_env, "cp", root, f"s3://{bucket}/p/"))
    monkeypatch.undo()
    assert result.returncode != 0
    assert "--exclude" in result.stderr or "permission" in result.stderr.lower(), result.stderr


def test_upload_start_where_the_journal_cannot_be_made_names_a_way_out(
    s3_env, bucket, tmp_path, monkeypatch
):
    # The README's "start (short form)", as alice on a file in /srv (readable, its directory
    # not hers): `persevere upload start /srv/data/g s3://b/k` prints "persevere: error:
    # cannot create state file /srv/data/g.persevere: Permission denied", exit 1, and nothing
    # else ("hint": null in --json). `cp` in the same place keeps the journal under
    # $XDG_STATE_HOME, and where it cannot, says "give --state-dir (or --state-file) a
    # writable place"; `upload start` has no --state-dir and says neither.
    from persevere import _journal

    source = write(tmp_path / "g", 100, 1)
    refused = str(source) + ".persevere"
    real_open = os.open

    def refusing(path, flags, *args):
        if str(path) == refused and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")  # (a directory not alice's)
        return real_open(path, flags, *args)

    monkeypatch.setattr(_journal.os, "open", refusing)
    result = clean(cli(s3_env, "upload", "start", source, f"s3://{bucket}/k", "--json"))
    monkeypatch.undo()
    answer = json.loads(result.stdout)
    assert answer.get("exit_code") == 1, (answer, result.stderr)
    assert answer["hint"], answer


def test_a_state_location_in_a_directory_it_cannot_search_is_one_line_not_a_traceback(
    s3_env, bucket, tmp_path, monkeypatch
):
    # `docker run -u 1000 ...` keeps HOME=/root (0700), as do a user's commands run with the
    # caller's environment: a file in a read-only directory (/data mounted ro) goes to
    # $HOME/.local/state/persevere/, which the user may not even stat. Every cp (a file,
    # a stream, a directory, --dry-run, --json) is then a 150-line rich traceback ending in an
    # ExceptionGroup / "PermissionError: [Errno 13] Permission denied:
    # '/root/.local/state/persevere/f.2aa4aaebfb9bc34c.persevere'", exit 1; so with
    # --state-dir or --state-file under a directory it cannot search (/root/x, a 0700
    # --state-dir root made: persevere makes them 0700). `upload resume/status/abort` say
    # "cannot read state file ...: Permission denied" in one line.
    source = write(tmp_path / "f", 100, 1)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_stat = os.stat

    def stat(path, *args, **kwargs):  # what stat(2) answers under a directory mode 0700 not ours
        if str(os.fspath(path)).startswith(str(locked) + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    runs = [
        cli(s3_env, "cp", source, f"s3://{bucket}/f", "--state-dir", locked / "sd"),
        cli(s3_env, "cp", source, f"s3://{bucket}/f", "--state-file", locked / "f.persevere"),
        cli(s3_env, "cp", tmp_path, f"s3://{bucket}/t/", "--state-dir", locked / "sd"),
    ]
    monkeypatch.undo()
    for run in runs:
        assert run.returncode == 1, run.stderr[-2000:]
        assert "Traceback" not in run.stderr, run.stderr[-2000:]


def test_a_file_under_a_directory_it_cannot_search_is_exit_2_not_a_traceback(
    s3_env, bucket, tmp_path, monkeypatch
):
    # alice types `persevere cp /home/bob/db.dump s3://b/k` (bob's home is 0700), or
    # /root/f: a rich traceback out of cp's `file.is_dir()` ("PermissionError: [Errno 13]
    # Permission denied: '/root/f'"), exit 1; `verify /root/f s3://b/k` the same. The long
    # form (`upload start --file-to-upload /root/f`) says "file to upload /root/f is not
    # accessible (permission denied)", exit 2, as the README's exit code table promises
    # (a file "that cannot be reached").
    locked = tmp_path / "bob"
    source = write(locked / "db.dump", 100, 1)
    real_stat = os.stat

    def stat(path, *args, **kwargs):  # stat(2) under a directory mode 0700 not ours
        if str(os.fspath(path)).startswith(str(locked) + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    runs = [
        cli(s3_env, "cp", source, f"s3://{bucket}/k", "--state-dir", tmp_path / "sd"),
        cli(s3_env, "verify", source, f"s3://{bucket}/k"),
    ]
    monkeypatch.undo()
    for run in runs:
        assert "Traceback" not in run.stderr, run.stderr[-2000:]
        assert run.returncode == 2, run.stderr[-2000:]


def test_an_aws_config_file_it_cannot_read_is_not_called_a_missing_profile(
    s3_env, bucket, tmp_path, monkeypatch
):
    # `sudo aws configure --profile backup` with HOME kept leaves ~/.aws/config root's, 0600.
    # alice's `persevere cp f s3://b/k --profile backup` (or AWS_PROFILE=backup): "persevere:
    # error: --profile: AWS profile 'backup' not found", exit 2 (configparser skips a file it
    # cannot open, silently). The profile is there; the file is unreadable: say so (the path
    # and "Permission denied"), as a config file that does not parse is named.
    import builtins

    home = tmp_path / "home"
    config = home / ".aws" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("[profile backup]\nregion = us-east-1\n")
    source = write(tmp_path / "f", 100, 1)
    real_open = builtins.open

    def refusing(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == str(config):
            raise PermissionError(13, "Permission denied", str(config))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    env = {**s3_env, "HOME": str(home), "AWS_CONFIG_FILE": str(config)}
    result = clean(cli(env, "cp", source, f"s3://{bucket}/k", "--profile", "backup"))
    monkeypatch.undo()
    assert result.returncode != 0
    assert "not found" not in result.stderr, result.stderr
    assert str(config) in result.stderr or "~/.aws/config" in result.stderr, result.stderr
