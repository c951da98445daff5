"""heartbeat in attach mode against a running fixtures/cluster.py: nothing spawned, only the victim killed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import NOBODY, ROOT, as_root, gone, shared_dir

SMOKE, CLUSTER = str(ROOT / "smoke.py"), str(ROOT / "fixtures" / "cluster.py")
FAILED, BEAT = r"worker (?P<worker>\S+) failed", r"heartbeat from worker (?P<worker>\S+)"


@pytest.fixture
def cluster(tmp_path):
    """A running system that is not ours: a coordinator (plain-text events) and workers w1, w2."""
    events, ready = tmp_path / "events.log", tmp_path / "port.json"
    procs = [subprocess.Popen([sys.executable, CLUSTER, "coordinator", "--events", str(events), "--text",
                               "--interval", "0.2", "--timeout", "0.6", "--ready-file", str(ready)],
                              stdout=subprocess.DEVNULL, start_new_session=True)]
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    port = json.loads(ready.read_text())["port"]
    for name in ("w1", "w2"):
        procs.append(subprocess.Popen([sys.executable, CLUSTER, "worker", "--coordinator", "127.0.0.1:%d" % port,
                                       "--name", name, "--id", "id-" + name, "--interval", "0.2"],
                                      stdout=subprocess.DEVNULL, start_new_session=True))
    yield {"events": str(events), "coordinator": procs[0], "w1": procs[1], "w2": procs[2]}
    for proc in procs:
        proc.kill()
        proc.wait()


def attach(*args):
    done = subprocess.run([sys.executable, SMOKE, "heartbeat"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=60)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def test_attach_kills_only_the_named_process_and_times_its_detection(cluster):
    done, report, results = attach("--pid", cluster["w1"].pid, "--log", cluster["events"], "--failure-pattern",
                                   FAILED, "--heartbeat-pattern", BEAT, "--expect-worker", "w1", "--deadline", 3,
                                   "--grace", 1)
    assert done.returncode == 0, (done.stderr, [(r["name"], r["message"]) for r in results.values()])
    assert list(results) == ["attach", "workers", "kill", "detect", "grace", "stop"]
    assert 0.3 < report["metrics"]["heartbeat"]["detection_s"] < 1.5
    assert CLUSTER in results["attach"]["facts"]["command"]
    assert cluster["w1"].wait(5) == -signal.SIGKILL
    assert cluster["coordinator"].poll() is None and cluster["w2"].poll() is None  # not ours: left running


def test_attach_by_pidfile_and_a_false_positive(cluster, tmp_path):
    pidfile = tmp_path / "w2.pid"
    pidfile.write_text("%d\n" % cluster["w2"].pid)
    with open(cluster["events"], "a") as fh:  # a line from before we attached does not count
        fh.write("2026-01-01 00:00:00.000 INFO worker w9 failed (id x)\n")
    done, _, results = attach("--pidfile", pidfile, "--log", cluster["events"], "--failure-pattern", FAILED,
                              "--expect-worker", "w2", "--deadline", 10, "--grace", 1)  # timing is not what is tested
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    assert "workers" not in results  # no heartbeat pattern: nothing to count
    # w1's failure while we watch for w2's: a false positive
    done, _, results = attach("--pid", cluster["w1"].pid, "--log", cluster["events"], "--failure-pattern", FAILED,
                              "--expect-worker", "w2", "--deadline", 3)
    assert done.returncode == 1 and "false positive: w1 reported failed, but w2 was killed" in \
        results["detect"]["message"], results


def test_a_pid_that_is_gone_is_exit_1_said_plainly(tmp_path, cluster):
    dead = subprocess.Popen(["true"])
    dead.wait()
    done, _, results = attach("--pid", dead.pid, "--log", cluster["events"], "--failure-pattern", FAILED,
                              "--expect-worker", "w1")
    assert done.returncode == 1, done.stderr
    assert results["attach"]["message"] == "pid %d is not running: nothing to kill" % dead.pid
    assert results["kill"]["status"] == "skip" and results["stop"]["status"] == "skip"
    pidfile = tmp_path / "gone.pid"
    pidfile.write_text("%d\n" % dead.pid)
    done, _, results = attach("--pidfile", pidfile, "--log", cluster["events"], "--failure-pattern", FAILED,
                              "--expect-worker", "w1")
    assert done.returncode == 1 and results["attach"]["message"] == \
        "pid %d from %s is not running: nothing to kill" % (dead.pid, pidfile)


@pytest.mark.parametrize("args, words", [
    (["--pidfile", "/nonexistent/x.pid"], "--pidfile: cannot read /nonexistent/x.pid"),
    (["--pid", "1"], "argument --pid"),
    (["--pid", "-1"], "argument --pid"),
    (["--failure-pattern", r"worker (\S+) failed"], "--failure-pattern: the pattern needs a group (?P<worker>"),
    (["--log", "/nonexistent/log"], "--log: /nonexistent/log is not a readable file"),
    (["--quorum", "2"], "--quorum: 2 detectors must report, but only 1 log is given"),
    (["--no-expect"], "--expect-worker"),
    (["--no-pid"], "give the process to kill, --pid PID or --pidfile FILE"),
    (["--signal", "SIGNOPE"], "--signal: 'SIGNOPE' is not a signal"),
])
def test_bad_attach_input_is_exit_2_and_nothing_is_signalled(cluster, args, words):
    base = {"--pid": str(cluster["w1"].pid), "--log": cluster["events"], "--failure-pattern": FAILED,
            "--expect-worker": "w1"}
    if args == ["--no-expect"]:
        base.pop("--expect-worker")
        args = []
    if args == ["--no-pid"]:
        base.pop("--pid")
        args = []
    if args and args[0] == "--pidfile":
        base.pop("--pid")
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    done, _, _ = attach(*[word for pair in base.items() for word in pair])
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    time.sleep(0.3)
    assert not gone(cluster["w1"].pid)


def test_a_victim_that_ends_before_the_kill_is_never_signalled(cluster):
    short = subprocess.Popen(["sleep", "1"])
    done, _, results = attach("--pid", short.pid, "--log", cluster["events"], "--failure-pattern", FAILED,
                              "--heartbeat-pattern", BEAT, "--expect-worker", "w1", "--min-beats", 30)
    short.wait()
    assert done.returncode == 1 and "ended before it was killed (sleep 1)" in results["workers"]["message"]
    assert results["kill"]["status"] == "skip" and cluster["w1"].poll() is None


def test_a_stopped_process_is_resumed_at_the_end(cluster):
    done, _, results = attach("--pid", cluster["w1"].pid, "--signal", "SIGSTOP", "--log", cluster["events"],
                              "--failure-pattern", FAILED, "--expect-worker", "w1", "--deadline", 3, "--grace", 0.5)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    assert results["stop"]["message"] == "resumed with SIGCONT"
    with open("/proc/%d/stat" % cluster["w1"].pid) as fh:
        assert fh.read().rsplit(")", 1)[1].split()[0] != "T"


def test_a_slow_pattern_is_an_error_with_the_report_kept(cluster):
    pattern = r"(?P<worker>\S+) failed \(id"  # backtracks on a long word, but only lines with " failed (id" reach it
    with open(cluster["events"], "a") as fh:
        fh.write("A" * 60000 + "\n")  # cannot match: skipped without running the pattern
    done, _, results = attach("--pid", cluster["w1"].pid, "--log", cluster["events"], "--failure-pattern", pattern,
                              "--expect-worker", "w1", "--deadline", 3, "--grace", 0.5)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--pid", str(cluster["w2"].pid), "--log",
                             cluster["events"], "--failure-pattern", r"(?P<worker>(a|a?)+)+ failed \(id",
                             "--expect-worker", "w2", "--grace", "0.5"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    with open(cluster["events"], "a") as fh:
        fh.write("a" * 5000 + "! failed (id x)\n")
    out, _ = proc.communicate(timeout=60)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 3 and results["kill"]["status"] == "pass" and results["detect"]["status"] == "error"
    assert "did not finish" in results["detect"]["message"]


def test_a_log_given_twice_through_a_link_and_our_own_ancestors_are_refused(cluster, tmp_path):
    link = tmp_path / "link.log"
    link.symlink_to(cluster["events"])
    done, _, _ = attach("--pid", cluster["w1"].pid, "--log", cluster["events"], "--log", link, "--failure-pattern",
                        FAILED, "--expect-worker", "w1")
    assert done.returncode == 2 and "a log is given twice (or through a link)" in done.stderr
    hard = tmp_path / "hard.log"
    os.link(cluster["events"], str(hard))
    done, _, _ = attach("--pid", cluster["w1"].pid, "--log", cluster["events"], "--log", hard, "--failure-pattern",
                        FAILED, "--expect-worker", "w1")
    assert done.returncode == 2 and "a log is given twice (or through a link)" in done.stderr
    done, _, _ = attach("--pid", os.getpid(), "--log", cluster["events"], "--failure-pattern", FAILED,
                        "--expect-worker", "w1")
    assert done.returncode == 2 and "is smoke.py itself or one of the processes that started it" in done.stderr
    fifo = tmp_path / "fifo.pid"
    os.mkfifo(str(fifo))
    done, _, _ = attach("--pidfile", fifo, "--log", cluster["events"], "--failure-pattern", FAILED,
                        "--expect-worker", "w1", "--validate")
    assert done.returncode == 2 and "not a regular file" in done.stderr
    assert not gone(cluster["w1"].pid)


def test_a_backlog_too_big_to_read_in_time_is_smoke_pys_error_not_the_detectors(tmp_path):
    log = tmp_path / "busy.log"
    log.write_text("")
    victim = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "def down(*_):\n"
        "    with open(sys.argv[1], 'a') as fh:\n"
        "        fh.write(('noise line of a busy service ' * 4 + '\\n') * 350000)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, down)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        "time.sleep(60)\n"), str(log)])
    while not (tmp_path / "busy.log.ready").exists():
        time.sleep(0.01)
    done, _, results = attach("--pid", victim.pid, "--signal", "SIGTERM", "--log", log, "--failure-pattern",
                              r"(?P<worker>\S+) failed", "--expect-worker", "w1", "--deadline", 0.3)
    victim.wait(10)
    assert done.returncode == 3 and "smoke.py fell behind" in results["detect"]["message"], results["detect"]


def test_a_failure_event_stamped_before_the_kill_is_no_detection(tmp_path):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    log = tmp_path / "events.log"
    log.write_text("")
    proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--pid", str(victim.pid), "--log", str(log),
                             "--failure-pattern", FAILED, "--expect-worker", "w1", "--deadline", "2", "--grace", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert victim.wait(10) is not None  # killed: now a detector writes a line stamped 30 s earlier
        stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 30))
        with open(str(log), "a") as fh:
            fh.write("%s worker w1 failed\n" % stale)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 1 and results["detect"]["status"] == "fail", err
    assert "stamped 3" in results["detect"]["message"] and "before the kill (more than clock_skew 1s): not taken " \
        "as a detection" in results["detect"]["message"]


@as_root
def test_another_users_pidfile_names_only_that_users_processes(tmp_path):
    """A pidfile is the kill's aim: nobody's own pidfile may aim root's kill at nobody's
    processes only (systemd's rule for PIDFile=), and one that a third user can write, or one of
    root's that others can write, at none."""
    victim = subprocess.Popen(["sleep", "60"])
    theirs = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    log = tmp_path / "events.log"
    log.write_text("")
    log.chmod(0o644)
    shared = shared_dir(tmp_path)
    try:
        for pid, owner, mode, allowed in ((victim.pid, NOBODY, 0o644, False), (theirs.pid, NOBODY, 0o644, True),
                                          (theirs.pid, NOBODY, 0o666, False), (victim.pid, 0, 0o666, False),
                                          (victim.pid, 0, 0o644, True)):
            pidfile = shared / ("%d-%d-%o.pid" % (pid, owner, mode))
            pidfile.write_text("%d\n" % pid)
            os.chown(str(pidfile), owner, owner)
            pidfile.chmod(mode)
            done, _, _ = attach("--pidfile", pidfile, "--log", log, "--failure-pattern", FAILED, "--expect-worker",
                                "w1", "--dry-run")
            if allowed:
                assert done.returncode == 0, (pidfile.name, done.stderr)
            else:
                assert done.returncode == 2 and "not " in done.stderr and len(done.stderr.splitlines()) == 1, (
                    pidfile.name, done.stderr)
        done, _, results = attach("--pidfile", shared / ("%d-%d-644.pid" % (victim.pid, NOBODY)), "--log", log,
                                  "--failure-pattern", FAILED, "--expect-worker", "w1", "--deadline", 1)
        assert done.returncode == 2 and "a process of user 0: not killed" in done.stderr, done.stderr
        # nobody's directory (as /run/redis is redis's): nobody's link there to root's pidfile, or root's
        # pidfile left there, aims at root's process through nobody's hands; nobody's own process is fine
        run = tmp_path / "run"
        run.mkdir()
        os.chown(str(run), NOBODY, NOBODY)
        os.symlink(str(shared / ("%d-0-644.pid" % victim.pid)), str(run / "link.pid"))
        os.lchown(str(run / "link.pid"), NOBODY, NOBODY)
        (run / "left.pid").write_text("%d\n" % victim.pid)
        (run / "own.pid").write_text("%d\n" % theirs.pid)
        for pidfile, words in ((run / "link.pid", "is a link of user %d" % NOBODY),
                               (run / "left.pid", "is user %d's to write and names pid %d, a process of user 0"
                                % (NOBODY, victim.pid))):
            done, _, _ = attach("--pidfile", pidfile, "--log", log, "--failure-pattern", FAILED, "--expect-worker",
                                "w1", "--deadline", 1)
            assert done.returncode == 2 and words in done.stderr, done.stderr
        done, _, _ = attach("--pidfile", run / "own.pid", "--log", log, "--failure-pattern", FAILED,
                            "--expect-worker", "w1", "--dry-run")
        assert done.returncode == 0, done.stderr
        group = tmp_path / "group"  # root's, but a group's to write (0775, nogroup): its members could swap files
        group.mkdir()
        os.chown(str(group), 0, NOBODY)
        group.chmod(0o775)
        (group / "app.pid").write_text("%d\n" % victim.pid)
        done, _, _ = attach("--pidfile", group / "app.pid", "--log", log, "--failure-pattern", FAILED,
                            "--expect-worker", "w1", "--dry-run")
        assert done.returncode == 2 and "could be written by more than one user" in done.stderr, done.stderr
        assert victim.poll() is None and theirs.poll() is None
    finally:
        for proc in (victim, theirs):
            proc.kill()
            proc.wait()
