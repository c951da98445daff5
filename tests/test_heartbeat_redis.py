"""heartbeat against a real detector: Redis Sentinel (Debian's redis-server and redis-sentinel),
in spawn mode (examples/heartbeat/redis-sentinel.json) and attach mode."""

import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, gone

SMOKE = str(ROOT / "smoke.py")
EXAMPLE = ROOT / "examples" / "heartbeat" / "redis-sentinel.json"
SDOWN = r"\+sdown master (?P<worker>\S+)"
pytestmark = pytest.mark.skipif(not shutil.which("redis-server"),
                                reason="redis-server is not installed (apt install redis-server redis-sentinel)")


def run(*args, cwd=ROOT):
    done = subprocess.run([sys.executable, SMOKE, "heartbeat"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=90, cwd=str(cwd))
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def test_spawn_mode_starts_master_replica_and_sentinels_and_times_sdown(tmp_path):
    doc = json.loads(EXAMPLE.read_text())
    doc["heartbeat"]["run_dir"] = str(tmp_path / "run")
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(doc))
    done, report, results = run("--config", path)
    assert done.returncode == 0, (done.stderr, [(r["name"], r["message"]) for r in results.values()])
    metrics = report["metrics"]["heartbeat"]
    assert sorted(metrics["detectors"]) == ["logs/sentinel%d.log" % n for n in (1, 2, 3)]
    # down-after-milliseconds 1000: Redis 7 says +sdown 1-2.2 s after the kill (it counts from its first
    # failed reconnect); the tool sees the line within ~50 ms of the time the line itself gives
    assert 0.9 < metrics["detection_s"] < 3 and abs(metrics["detection_s"] - metrics["event_detection_s"]) < 0.15
    pids = list(results["coordinator"]["facts"]["pids"].values()) + [results["kill"]["facts"]["pid"]]
    assert len(pids) == 5 and all(gone(pid) for pid in pids)


def _port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sentinels(tmp_path):
    """A running Redis master and three sentinels that smoke.py did not start."""
    master_port = _port()
    master = subprocess.Popen(["redis-server", "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                               "--pidfile", str(tmp_path / "master.pid"), "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    procs, logs = [master], []
    for n in (1, 2, 3):
        conf, log = tmp_path / ("sentinel%d.conf" % n), tmp_path / ("sentinel%d.log" % n)
        conf.write_text("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor mymaster 127.0.0.1 %d 2\n"
                        "sentinel down-after-milliseconds mymaster 1000\n" % (_port(), tmp_path, log, master_port))
        procs.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                      start_new_session=True))
        logs.append(log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (all(log.exists() and "+monitor master mymaster" in log.read_text()
                                                   for log in logs) and (tmp_path / "master.pid").exists()):
        time.sleep(0.05)
    yield {"pidfile": tmp_path / "master.pid", "logs": logs, "master": master, "sentinels": procs[1:]}
    for proc in procs:
        proc.kill()
        proc.wait()


def test_attach_mode_kills_the_running_master_and_a_quorum_of_sentinels_sees_it(sentinels, tmp_path):
    args = ["--pidfile", sentinels["pidfile"], "--failure-pattern", SDOWN, "--expect-worker", "mymaster",
            "--quorum", 2, "--deadline", 5, "--grace", 1]
    for log in sentinels["logs"]:
        args += ["--log", log]
    done, report, results = run(*args, cwd=tmp_path)
    assert done.returncode == 0, (done.stderr, [(r["name"], r["message"]) for r in results.values()])
    metrics = report["metrics"]["heartbeat"]
    assert metrics["quorum"] == 2 and len(metrics["detectors"]) >= 2 and 0.9 < metrics["detection_s"] < 3
    assert sentinels["master"].wait(5) == -9
    assert all(proc.poll() is None for proc in sentinels["sentinels"])  # not ours: still running

