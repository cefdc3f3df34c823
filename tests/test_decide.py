"""cp's choice (:func:`persevere._decide.decide`): pure, so its rules are checked alone."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from persevere._decide import Decision, Found, Learnt, Source, decide
from persevere._journal import Header, HeaderTorn, JournalState
from persevere._units import MiB

SIZE = 20 * MiB


def header(stream: bool = False, size: int = SIZE) -> Header:
    return Header(
        bucket="b", key="k", upload_id="u", endpoint_url=None, region=None, profile=None,
        file_path="-" if stream else "/data/f", file_size=size, mtime_ns=1, part_size=8 * MiB,
        checksum_algorithm="CRC64NVME", checksum_type="FULL_OBJECT", created_at="now",
        tool_version="test", stream_every=1000 if stream else None,
    )  # fmt: skip


def journal(finished: str | None, stream: bool = False, size: int = SIZE) -> JournalState:
    outcome = None if finished is None else {"type": finished, "at": "then"}
    return JournalState(header(stream, size), outcome=outcome)


journals = st.builds(
    journal,
    st.sampled_from([None, "completed", "aborted"]),
    st.booleans(),
    st.sampled_from([SIZE, SIZE + 1]),
)
founds: st.SearchStrategy[Found] = st.one_of(
    st.sampled_from(["none", "empty"]),
    st.builds(HeaderTorn, st.just("state file s: the header line is incomplete")),
    journals,
)
sources = st.builds(Source, st.booleans(), st.sampled_from([SIZE, SIZE - 1, SIZE + 5]))
conflict_lists = st.lists(st.sampled_from(["checksum CRC64NVME, not SHA256", "Tagging"]))
learnts = st.builds(
    Learnt,
    st.sampled_from([None, True, False]),
    st.booleans(),
    st.sampled_from([None, "s3://b/k is gone (NoSuchKey)"]),
)


def finished(found: Found) -> str | None:
    return found.finished if isinstance(found, JournalState) else None


@given(founds, sources, conflict_lists, learnts)
def test_a_stream_is_never_found_done(found, source, conflicts, learnt):
    """A stream cannot be proven equal to the object without being read and sent."""
    if source.stream:
        assert decide(found, source, conflicts, learnt).action not in ("done", "check")


@given(founds, sources, conflict_lists, learnts)
def test_a_finished_journal_is_never_resumed_nor_restarted(found, source, conflicts, learnt):
    if not isinstance(found, JournalState) or found.finished is not None:
        assert decide(found, source, conflicts, learnt).action not in ("resume", "restart")


@given(founds, sources, conflict_lists, learnts)
def test_refused_iff_a_conflict_with_an_upload_unfinished_or_still_the_object(
    found, source, conflicts, learnt
):
    """Options a run would ignore are refused where the upload goes on, or is found done;
    an object that is not the upload's own any more is simply uploaded again."""
    decision = decide(found, source, conflicts, learnt)
    unfinished = isinstance(found, JournalState) and found.finished is None
    still_ours = finished(found) == "completed" and not source.stream and learnt.object_ours
    assert (decision.action == "refuse") == bool(conflicts and (unfinished or still_ours))
    if decision.action == "refuse":
        assert decision.why == "; ".join(conflicts)


@given(founds, sources, conflict_lists, learnts)
def test_done_only_when_the_object_is_still_the_uploads_own(found, source, conflicts, learnt):
    if decide(found, source, conflicts, learnt).action == "done":
        assert learnt.object_ours is True and not conflicts


@given(founds, sources, conflict_lists, learnts)
def test_nothing_to_go_on_with_is_a_start(found, source, conflicts, learnt):
    if not isinstance(found, JournalState) or found.finished == "aborted":
        assert decide(found, source, conflicts, learnt).action == "start"


@given(founds, sources, conflict_lists, learnts)
def test_what_was_learnt_is_never_asked_again(found, source, conflicts, learnt):
    """cp's loop ends: a check is asked only while the object's ownership is unknown, and a
    resume only before it was found unable to go on."""
    action = decide(found, source, conflicts, learnt).action
    if action == "check":
        assert learnt.object_ours is None
    if action == "resume":
        assert not learnt.upload_gone


@given(journals, sources, learnts)
def test_an_upload_in_progress_of_a_file_of_another_size_starts_again(found, source, learnt):
    if found.finished is None and not found.header.stream and not source.stream:
        decision = decide(found, source, [], learnt)
        if source.size != found.header.file_size:
            assert decision.action == "restart"
            said = f"size {found.header.file_size:,} -> {source.size:,} bytes"
            assert said in (decision.why or "")


def test_a_torn_header_starts_again_saying_why():
    torn = HeaderTorn("state file s: the header line is incomplete")
    decision = decide(torn, Source(False, SIZE), ["Tagging"])
    assert decision.action == "start"
    assert decision.why and decision.why.startswith("state file s: the header line is incomplete")


def test_a_completed_file_upload_is_checked_then_done_or_uploaded_again():
    done = journal("completed")
    assert decide(done, Source(False, SIZE), []) == Decision("check")
    assert decide(done, Source(False, SIZE), [], Learnt(True)) == Decision("done")
    gone = Learnt(False, why="s3://b/k is gone (NoSuchKey)")
    assert decide(done, Source(False, SIZE), ["Tagging"], gone) == Decision(
        "start", "s3://b/k is gone (NoSuchKey): uploading it again"
    )


def test_an_upload_gone_is_checked_for_a_file_and_restarted_for_a_stream():
    """A file's journal may hold every part of an upload an earlier run completed; a stream
    has not been read yet, so it can start again whole."""
    gone = Learnt(upload_gone=True, why="upload u no longer exists")
    assert decide(journal(None), Source(False, SIZE), [], gone).action == "check"
    found_done = Learnt(True, upload_gone=True)
    assert decide(journal(None), Source(False, SIZE), [], found_done).action == "done"
    not_done = Learnt(False, upload_gone=True, why="upload u no longer exists")
    assert decide(journal(None), Source(False, SIZE), [], not_done) == Decision(
        "restart", "upload u no longer exists"
    )
    stream = journal(None, stream=True)
    assert decide(stream, Source(True), [], gone) == Decision(
        "restart", "upload u no longer exists"
    )


@given(journals, conflict_lists, learnts)
def test_a_write_once_stream_is_found_done_only_once_checked_to_be_the_object(
    found, conflicts, learnt
):
    """A write-once stream cannot replace its completed object: it is checked (read through
    and compared), and found done only if it is that object and the options agree; a stream
    not write-once is sent again."""
    decision = decide(found, Source(True, write_once=True), conflicts, learnt)
    checking = found.finished == "completed" and not conflicts
    assert (decision.action == "check") == (checking and learnt.object_ours is None)
    assert (decision.action == "done") == (checking and learnt.object_ours is True)
    plain = decide(found, Source(True), conflicts, learnt).action
    assert plain not in ("check", "done")
