"""The large-body path's pieces: its frame kind, and the server's refusal to read a planted reply file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from moorage.asyncinf.bodies import BodyFiles, ReplyFileError
from moorage.backends.bodies import RAY_INLINE_LIMIT, inline, take_reply_file
from moorage.worker.protocol import INVOKE_FILES, REPLY_IN_FILE, Invoke, Reply, decode, encode


def test_a_plain_invoke_keeps_its_frame_and_a_files_invoke_round_trips() -> None:
    plain = Invoke(7, b"body", "application/json", "text/csv", (("X-A", "1"),))
    frame = b"".join(encode(plain))
    assert frame[4] == Invoke.kind
    assert decode(frame[4:]) == plain
    path = "/data/scratch/ep-0-é/7-ab.in"  # a path that is not latin-1 survives the frame
    files = Invoke(
        7,
        b"",
        "application/octet-stream",
        None,
        (),
        body_file=path,
        reply_file=path[:-3] + ".out",
        reply_over=1 << 20,
    )
    frame = b"".join(encode(files))
    assert frame[4] == INVOKE_FILES
    assert decode(frame[4:]) == files


def test_a_reply_file_must_be_a_plain_file_of_its_own(tmp_path: Path) -> None:
    bodies = BodyFiles(tmp_path / "bodies")
    secret = tmp_path / "server-secret"
    secret.write_bytes(b"the server's own file")
    answer = bodies.reply_path("linked")
    os.symlink(secret, answer)
    with pytest.raises(ReplyFileError, match="cannot be opened"):
        bodies.head(answer, 100)
    answer.unlink()
    os.link(secret, answer)
    with pytest.raises(ReplyFileError, match="not a plain file of its own"):
        bodies.head(answer, 100)
    answer.unlink()
    answer.write_bytes(b"x" * 3_000_000)
    assert b"".join(bodies.chunks(answer)) == b"x" * 3_000_000
    assert bodies.head(answer, 10) == b"x" * 10


def test_starting_empties_the_directory_and_the_worker_file_is_moved_out(tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "left-by-a-kill.in").write_bytes(b"old")
    bodies = BodyFiles(tmp_path / "bodies")
    assert list(bodies.directory.iterdir()) == []
    scratch = tmp_path / "scratch.out"
    scratch.write_bytes(b"answer")
    reply = Reply(3, 200, b"", "application/json", flags=REPLY_IN_FILE)
    assert take_reply_file(reply, (str(scratch), str(bodies.reply_path("r")))) is reply
    assert bodies.head(bodies.reply_path("r"), 100) == b"answer" and not scratch.exists()
    missing = take_reply_file(reply, (str(scratch), str(bodies.reply_path("s"))))
    assert missing.status == 500 and b"cannot be moved" in missing.body


def test_the_ray_backend_carries_a_large_input_inline_up_to_its_limit(tmp_path: Path) -> None:
    small = tmp_path / "small.in"
    small.write_bytes(b"y" * 2_000_000)
    request = Invoke(5, b"", "application/octet-stream", None, (), body_file=str(small), reply_file="/x.out")
    carried = inline(request)
    assert isinstance(carried, Invoke)
    assert carried.body == b"y" * 2_000_000 and carried.body_file is None and carried.reply_file is None
    large = tmp_path / "large.in"
    with large.open("wb") as handle:
        handle.truncate(RAY_INLINE_LIMIT + 1)  # sparse: no disk used
    refused = inline(dataclasses.replace(request, body_file=str(large)))
    assert isinstance(refused, Reply) and refused.status == 413 and refused.request_id == 5
    assert b"Use --backend local for inputs up to 1 GB" in refused.body
