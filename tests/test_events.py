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
