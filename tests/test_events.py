"""probes.events: following real files as they grow, and reading events from their lines."""

import calendar
import os
import time

import pytest

from checks import ConfigError
from checks.probes.events import Events, Follow, timestamp


def test_a_line_counts_once_and_only_when_whole(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"old line\n")
    follow = Follow(str(log), from_end=True)
    assert follow.lines() == []
    with open(str(log), "ab") as fh:
        fh.write(b"one\ntw")
        fh.flush()
        assert follow.lines() == ["one"]
        fh.write(b"o\r\nthree\n")
    assert follow.lines() == ["two", "three"] and follow.lines() == []


def test_rotation_reads_the_old_file_to_its_end_then_the_new_one(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("a\n")
    follow = Follow(str(log))
    assert follow.lines() == ["a"]
    with open(str(log), "a") as fh:
        fh.write("b\n")
    os.rename(str(log), str(tmp_path / "app.log.1"))
    log.write_text("c\n")
    assert follow.lines() == ["b", "c"]


def test_truncation_starts_again_and_a_missing_file_is_waited_for(tmp_path):
    log = tmp_path / "app.log"
    follow = Follow(str(log))
    assert follow.lines() == []  # not there yet
    log.write_text("first line here\nsecond line here\n")
    assert len(follow.lines()) == 2
    with open(str(log), "w") as fh:  # truncated in place, as copytruncate does
        fh.write("x\n")
    assert follow.lines() == ["x"]


def test_a_long_line_is_cut_and_the_rest_of_it_dropped(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"a" * 5000 + b"\nnext\n" + b"b" * 3000)
    follow = Follow(str(log), max_line=1000)
    assert follow.lines() == ["a" * 1000, "next", "b" * 1000]
    with open(str(log), "ab") as fh:
        fh.write(b"bbb\nafter\n")
    assert follow.lines() == ["after"]


def test_ndjson_events_skip_noise_and_keep_their_time():
    events = Events(topics={"heartbeat": "worker_heartbeat", "failure": "worker_failed"})
    lines = ['{"topic": "worker_heartbeat", "worker_id": "w1", "ts": "2026-11-23T16:31:41.250Z"}',
             "not json at all", '{"topic": "worker_failed", "worker_id": "w2", "ts": 1795451501.5}',
             '{"topic": "worker_failed"', '{"topic": "other", "worker_id": "w3"}', "[1, 2]",
             '{"topic": "worker_heartbeat", "worker_id": 7}']
    found = events.parse(lines, time.monotonic() + 5)
    assert [(e.kind, e.worker) for e in found] == [("heartbeat", "w1"), ("failure", "w2"), ("heartbeat", "7")]
    assert found[0].at == calendar.timegm((2026, 11, 23, 16, 31, 41)) + 0.25 and found[1].at == 1795451501.5


def test_plain_text_events_by_pattern_with_a_worker_group():
    events = Events(patterns={"failure": r"\+sdown master (?P<worker>\S+)"})
    lines = ["1234:X 23 Nov 2026 16:31:41.123 # +sdown master mymaster 127.0.0.1 6379",
             "1234:X 23 Nov 2026 16:31:40.000 * +monitor master mymaster"]
    found = events.parse(lines, time.monotonic() + 5)
    assert [(e.kind, e.worker) for e in found] == [("failure", "mymaster")]
    assert found[0].at == time.mktime((2026, 11, 23, 16, 31, 41, 0, 0, -1)) + 0.123
    with pytest.raises(ConfigError, match="needs a group"):
        Events(patterns={"failure": r"\+sdown master \S+"})


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23T16:31:41Z", calendar.timegm((2026, 11, 23, 16, 31, 41))),
    ("2026-11-23 16:31:41+01:00 worker died", calendar.timegm((2026, 11, 23, 15, 31, 41))),
    ("level=info ts=2026-11-23T16:31:41.5Z msg=beat", calendar.timegm((2026, 11, 23, 16, 31, 41)) + 0.5),
    ("1795451501", 1795451501.0), ("1795451501500", 1795451501.5),
    ("no time here", None), ("42", None)])
def test_timestamps_in_their_common_forms(text, expected):
    assert timestamp(text) == expected


def test_a_syslog_time_has_no_year_and_is_the_last_such_date():
    stamp = timestamp("%s worker[12]: heartbeat" % time.strftime("%b %d %H:%M:%S", time.localtime()))
    assert stamp is not None and abs(stamp - time.time()) < 2


def test_a_rotated_file_is_read_to_its_end_however_much_it_still_holds(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("start\n")
    follow = Follow(str(log))
    assert follow.lines() == ["start"]
    with open(str(log), "a") as fh:
        fh.write(("x" * 99 + "\n") * 50000 + "the last old line\n")  # 5 MB unread when it rotates
    os.rename(str(log), str(tmp_path / "app.log.1"))
    log.write_text("new\n")
    lines = []
    for _ in range(10):
        lines += follow.lines()
    assert lines[-2:] == ["the last old line", "new"] and len(lines) == 50002


def test_a_log_that_is_no_regular_file_is_a_problem_not_a_hang(tmp_path):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(str(fifo))
    follow = Follow(str(fifo))
    assert follow.lines() == [] and follow.problem == "%s is not a regular file" % fifo
    follow = Follow(str(tmp_path))
    assert follow.lines() == [] and "is not a regular file" in follow.problem


def test_a_local_time_with_a_comma_as_pythons_logging_writes_it():
    stamp = time.mktime((2026, 12, 1, 20, 29, 13, 0, 0, -1)) + 0.123
    assert abs(timestamp("2026-12-01 20:29:13,123 INFO worker w1 failed") - stamp) < 1e-6
    assert timestamp("2026-12-01T20:29:13.5Z") == calendar.timegm((2026, 12, 1, 20, 29, 13)) + 0.5


@pytest.mark.parametrize("pattern, needed", [
    (r"(?P<worker>\S+) failed \(id", " failed (id"), (r"\+sdown master (?P<worker>\S+)", "+sdown master "),
    (r"ERROR|FATAL", ""), (r"(?i)failed", ""), (r"ab?cd", "cd"), (r"x(ab)*y", "x")])
def test_the_text_every_match_must_hold_lets_other_lines_skip_the_regex(pattern, needed):
    from checks import regex
    assert regex.required_text(pattern) == needed
    lines = ["noise %d" % i for i in range(1000)] + ["w1 failed (id 7)", "+sdown master mymaster 127.0.0.1 6379"]
    spans = regex.search_each(pattern, lines, time.monotonic() + 5)
    assert spans == [regex.search(pattern, line, time.monotonic() + 5) for line in lines]
