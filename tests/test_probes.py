"""probes.proc: spawned processes are owned from the moment they exist, and stopped; a command's
output kept under a real memory limit (RLIMIT_AS) is an error, never a traceback."""

import resource
import sys
import time

import pytest

from checks import CheckError
from checks.lifecycle import Cleanup
from checks.probes import proc
from conftest import config, gone, report_of, smoke


def test_a_spawned_process_logs_to_its_file_and_is_stopped_by_the_runs_cleanup(tmp_path):
    cleanup, log = Cleanup(), tmp_path / "server.log"
    code = "import sys, time; print('ready', flush=True); print('oops', file=sys.stderr, flush=True); time.sleep(60)"
    spawned = proc.spawn([sys.executable, "-c", code], str(log), cleanup)
    deadline = time.monotonic() + 5
    while "oops" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.read_text().split() == ["ready", "oops"] and spawned.running()
    assert cleanup.run_all() == []
    assert gone(spawned.pid)


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(tmp_path):
    cleanup = Cleanup()
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    spawned = proc.spawn([sys.executable, "-c", code], str(tmp_path / "p.log"), cleanup)
    while "up" not in (tmp_path / "p.log").read_text():
        time.sleep(0.02)
    started = time.monotonic()
    assert spawned.stop(grace=0.3) == -9
    assert 0.25 < time.monotonic() - started < 2 and gone(spawned.pid)
    assert cleanup.run_all() == []  # stopped: nothing left for cleanup


def test_run_and_spawn_name_a_missing_program(tmp_path):
    with pytest.raises(CheckError, match="cannot run: no-such-program-x not found"):
        proc.run(["no-such-program-x"], 1)
    with pytest.raises(CheckError, match="cannot open the log"):
        proc.spawn(["true"], str(tmp_path / "no" / "dir.log"), Cleanup())


def test_run_times_out_and_kills_the_group():
    done = proc.run("sleep 30 & echo started; wait", 0.3, shell=True)
    assert done.exit_code is None and done.stdout.strip() == "started" and done.seconds < 2


def test_out_of_memory_keeping_output_is_an_error_without_a_traceback(tmp_path):
    path = config(tmp_path, [{"name": "big", "kind": "command", "command": ["head", "-c", "60000000", "/dev/zero"],
                              "max_output": 64 * 1024 * 1024, "timeout": 30}])
    limit = 300 * 1024 * 1024
    done = smoke("health", "--config", path,
                 preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert "Traceback" not in done.stderr
    result = report_of(done)["results"][0]
    assert result["status"] in ("pass", "error"), result  # enough memory here, or an error: never a fail
    if result["status"] == "error":
        assert "out of memory" in result["message"] and done.returncode == 3
