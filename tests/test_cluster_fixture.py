"""fixtures/cluster.py, read through probes.events: the stand-in that heartbeat is tested against."""

import json
import signal
import subprocess
import sys
import time

import pytest

from checks.probes.events import Events, Follow
from conftest import ROOT

CLUSTER = str(ROOT / "fixtures" / "cluster.py")
EVENTS = Events(topics={"heartbeat": "worker_heartbeat", "failure": "worker_failed"}, worker_field="worker")


def start(tmp_path, *coordinator_flags, workers=("w1", "w2"), worker_flags=()):
    ready, events = tmp_path / "port.json", tmp_path / "events.ndjson"
    procs = [subprocess.Popen([sys.executable, CLUSTER, "coordinator", "--events", str(events), "--interval", "0.2",
                               "--timeout", "0.6", "--ready-file", str(ready)] + list(coordinator_flags),
                              stdout=subprocess.DEVNULL)]
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    port = json.loads(ready.read_text())["port"]
    for i, name in enumerate(workers):
        procs.append(subprocess.Popen([sys.executable, CLUSTER, "worker", "--coordinator", "127.0.0.1:%d" % port,
                                       "--name", name, "--id", "id-%s" % name, "--interval", "0.2"]
                                      + list(worker_flags if i == 0 else ()), stdout=subprocess.DEVNULL))
    return procs, Follow(str(events))


def watch(follow, seconds):
    found, ends = [], time.monotonic() + seconds
    while time.monotonic() < ends:
        found += EVENTS.parse(follow.lines(), time.monotonic() + 1)
        time.sleep(0.02)
    return found


def stop(procs):
    for proc in procs:
        proc.kill()
        proc.wait(5)


def test_a_killed_worker_is_reported_failed_and_no_one_else(tmp_path):
    procs, follow = start(tmp_path)
    try:
        before = watch(follow, 1.0)
        assert {e.worker for e in before if e.kind == "heartbeat"} == {"w1", "w2"}
        procs[1].send_signal(signal.SIGKILL)
        killed = time.time()
        after = watch(follow, 1.5)
        failures = [e for e in after if e.kind == "failure"]
        assert [e.worker for e in failures] == ["w1"]
        assert 0.4 < failures[0].at - killed < 1.5  # the fixture's own timing: 0.6 s of silence
    finally:
        stop(procs)


@pytest.mark.parametrize("flags, worker_flags, expected", [
    (["--never-detect"], [], []), (["--false-positive", "w2"], [], ["w2"]), ([], ["--never-beat"], [])])
def test_the_failure_switches(tmp_path, flags, worker_flags, expected):
    procs, follow = start(tmp_path, *flags, worker_flags=worker_flags)
    try:
        found = watch(follow, 2.0)
        assert [e.worker for e in found if e.kind == "failure"] == expected
        if worker_flags:
            assert "w1" not in {e.worker for e in found}
    finally:
        stop(procs)
