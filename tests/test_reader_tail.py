"""JsonlTail: only new complete lines, malformed lines counted, replaced or shrunk files read anew."""

import json
import os
import shutil

from trainer.rundir.jsonl import JsonlTail, read_records


def write(path, text, mode="a"):
    with open(path, mode, encoding="utf-8") as f:
        f.write(text)


def line(step, **values):
    return json.dumps({"step": step, **values}) + "\n"


def test_poll_returns_only_records_appended_since_the_last_poll(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0) + line(1))
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.poll()] == [0, 1]
    assert tail.poll() == []
    write(path, line(2))
    assert [r["step"] for r in tail.poll()] == [2]
    assert tail.resets == 0 and tail.malformed == 0


def test_torn_last_line_is_left_until_it_is_completed(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0) + '{"step": 1, "lo')
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.poll()] == [0]
    assert tail.poll() == []
    write(path, 'ss": 2.5}\n')
    assert tail.poll() == [{"step": 1, "loss": 2.5}]
    assert tail.malformed == 0


def test_malformed_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0) + "not json\n" + "[1, 2]\n" + "\n" + b"\xff\xfe\n".decode("latin-1") + line(1))
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.poll()] == [0, 1]
    assert tail.malformed == 3  # the blank line is not counted


def test_replaced_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0) + line(1) + line(2))
    tail = JsonlTail(path)
    assert len(tail.poll()) == 3
    replacement = tmp_path / "new.jsonl"
    write(replacement, line(0) + line(1) + line(2) + line(3))  # longer than before: size alone cannot tell
    os.replace(replacement, path)
    assert [r["step"] for r in tail.poll()] == [0, 1, 2, 3]
    assert tail.was_reset and tail.resets == 1
    write(path, line(4))
    assert [r["step"] for r in tail.poll()] == [4]
    assert not tail.was_reset


def test_shrunk_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0) + line(1) + line(2))
    tail = JsonlTail(path)
    tail.poll()
    write(path, line(7), mode="w")  # truncated in place: same inode
    assert [r["step"] for r in tail.poll()] == [7]
    assert tail.resets == 1


def test_file_rewritten_in_place_to_a_bigger_size_is_read_again(tmp_path):
    path = tmp_path / "m.jsonl"
    write(path, line(0))
    tail = JsonlTail(path)
    tail.poll()
    write(path, line(10, loss=1.0) + line(11), mode="w")  # same inode, grew: the old offset is mid-line
    assert [r["step"] for r in tail.poll()] == [10, 11]
    assert tail.resets == 1


def test_missing_file_reads_empty_and_is_picked_up_when_it_appears(tmp_path):
    path = tmp_path / "later.jsonl"
    tail = JsonlTail(path)
    assert tail.poll() == [] and tail.resets == 0
    write(path, line(0))
    assert [r["step"] for r in tail.poll()] == [0]
    assert read_records(tmp_path / "never.jsonl") == []


def test_deleted_directory_reads_empty_without_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write(run_dir / "m.jsonl", line(0))
    tail = JsonlTail(run_dir / "m.jsonl")
    assert len(tail.poll()) == 1
    shutil.rmtree(run_dir)
    assert tail.poll() == []
    run_dir.mkdir()
    write(run_dir / "m.jsonl", line(5))  # a new run under the same name: a new file
    assert [r["step"] for r in tail.poll()] == [5]
    assert tail.resets == 1
