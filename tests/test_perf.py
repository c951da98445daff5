"""perf against real servers on 127.0.0.1: the fixture's /latency knobs, a refusing port, nginx."""

import array
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, read_terminal
from checks import perf
from checks.probes import load
from fixtures.service import serve_in_thread

SMOKE = str(ROOT / "smoke.py")


@pytest.fixture
def server():
    """A fresh fixture service: /latency counts its own requests, so each test gets its own."""
    srv, url = serve_in_thread()
    yield url
    srv.shutdown()
    srv.server_close()


def smoke(*args, config=None, tmp_path=None):
    argv = [sys.executable, SMOKE, "perf"] + [str(a) for a in args]
    if config is not None:
        path = tmp_path / "smoke.json"
        path.write_text(json.dumps({"perf": config}))
        argv += ["--config", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def test_percentiles_are_nearest_rank_over_every_sample():
    ordered = list(range(1, 101))
    assert [perf.percentile(ordered, p) for p in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]
    assert perf.percentile([7.0], 99) == 7.0 and perf.percentile([1, 2, 3, 4], 50) == 2
    samples = load.Samples()
    samples.latencies = array.array("d", [float(i) for i in range(1, 1001)])
    samples.errors["500"] = 10
    samples.started, samples.ended = 0.0, 2.0
    facts = perf.summarise(samples)
    assert (facts["p50_ms"], facts["p999_ms"], facts["count"], facts["rps"]) == (500, 999, 1010, 500.0)  # answers/s
    assert facts["error_rate"] == round(10 / 1010, 6) and "insufficient" not in facts
    assert sum(count for _, count in facts["histogram"]) == 1000


def test_a_fixed_delay_gives_p50_near_it(server):
    done, report, results = smoke("--url", server + "/latency?delay_ms=20", "--requests", 100, "--connections", 2,
                                  "--threshold", "p50_ms < 30")
    facts = results["url"]["facts"]
    assert done.returncode == 0, results
    assert 19.9 < facts["p50_ms"] < 23 and facts["count"] == 100 and facts["errors"] == 0


def test_an_error_share_is_counted_exactly_by_kind(server):
    done, _, results = smoke("--url", server + "/latency?error_rate=0.05", "--requests", 200, "--connections", 1,
                             "--threshold", "error_rate < 0.01")
    facts = results["url"]["facts"]
    assert done.returncode == 1 and facts["error_rate"] == 0.05 and facts["errors_by_kind"] == {"500": 10}
    assert "error_rate" in results["url"]["message"]


def test_an_open_load_does_not_hide_what_a_stall_delayed(server):
    url = server + "/latency?delay_ms=2&stall_every=25&stall_ms=400"
    _, _, closed = smoke("--url", url, "--duration", 2, "--connections", 1)
    _, _, opened = smoke("--url", url, "--duration", 2, "--connections", 1, "--rate", 40)
    closed, opened = closed["url"]["facts"], opened["url"]["facts"]
    # closed: the stalled request alone is slow; open: every request due during the stall waited for it
    assert closed["p90_ms"] < 50 and opened["p90_ms"] > 100, (closed, opened)


def test_too_few_samples_for_a_percentile_is_an_error_not_a_number(server):
    done, _, results = smoke("--url", server + "/latency", "--requests", 50, "--threshold", "p99_ms < 100")
    assert done.returncode == 3 and results["url"]["status"] == "error"
    assert "insufficient samples: 50 of the 100 p99_ms needs" in results["url"]["message"]
    assert "p99_ms" not in results["url"]["facts"] and results["url"]["facts"]["p95_ms"] >= 0


def test_a_baseline_gives_ratios(server, tmp_path):
    saved = tmp_path / "baseline.json"
    done, _, _ = smoke("--url", server + "/latency?delay_ms=5", "--requests", 100, "--save-baseline", saved)
    assert done.returncode == 0 and json.loads(saved.read_text())["metrics"]["perf"]["targets"]["url"]["p50_ms"] > 4
    done, _, results = smoke("--url", server + "/latency?delay_ms=10", "--requests", 100, "--baseline", saved,
                             "--threshold", "p50_ratio < 1.5")
    facts = results["url"]["facts"]
    assert done.returncode == 1 and 1.5 < facts["p50_ratio"] < 2.5 and "rps_ratio" in facts


def test_a_command_target_runs_repeatedly(tmp_path):
    config = {"targets": [{"name": "cli", "command": [sys.executable, "-c", "pass"], "runs": 5,
                           "thresholds": ["p50_ms < 5000", "error_rate == 0"]}]}
    done, _, results = smoke(config=config, tmp_path=tmp_path)
    assert done.returncode == 0 and results["cli"]["facts"]["count"] == 5, results


def test_a_server_that_refuses_ends_quickly_with_every_request_an_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    done, _, results = smoke("--url", "http://127.0.0.1:%d/" % port, "--duration", 1, "--threshold",
                             "error_rate < 0.01")
    assert time.monotonic() - started < 10 and done.returncode == 1
    assert results["url"]["facts"]["error_rate"] == 1.0 and "refused" in results["url"]["facts"]["errors_by_kind"]


@pytest.mark.parametrize("args, words", [
    (["--threshold", "p95ms < 5"], "--threshold 'p95ms < 5': 'p95ms' is not a perf metric; did you mean p95_ms?"),
    (["--rate", "0"], "argument --rate"), (["--duration", "-1"], "argument --duration"),
    (["--threshold", "p95_ratio < 1.1"], "compares with a baseline: give --baseline FILE"),
    (["--rate", "10", "--requests", "5"], "an open load (rate) runs for a duration")])
def test_bad_input_is_exit_2(server, args, words):
    done, _, _ = smoke("--url", server + "/latency", *args)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"),
                    reason="nginx is not installed (apt install nginx)")
def test_nginx_from_debian_as_a_real_target(tmp_path):
    port = _free_port()
    temp = " ".join("%s_temp_path %s;" % (kind, tmp_path / kind) for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        "worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;\n"
        "events { worker_connections 1024; }\n"
        "http { access_log off; %s server { listen 127.0.0.1:%d; location / { return 200 'hello'; } } }\n"
        % (tmp_path, tmp_path, temp, port))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp_path / "nginx.conf"),
                              "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        done, _, results = smoke("--url", "http://127.0.0.1:%d/" % port, "--duration", 1, "--threshold",
                                 "error_rate == 0", "--threshold", "rps > 100")
        assert done.returncode == 0, results
        assert results["url"]["facts"]["count"] > 100
    finally:
        nginx.terminate()
        nginx.wait(10)


def _raw_server(answer):
    """A server on 127.0.0.1 that answers every request with `answer(conn)`; its port."""
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def handle(conn):
        with conn:
            try:
                while conn.recv(65536):
                    if answer(conn) is False:
                        return
            except OSError:
                pass

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return srv


def test_chunked_huge_and_garbage_answers_are_read_as_a_server_sends_them():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n1388\r\n" + b"y" * 5000 + \
        b"\r\n0\r\n\r\n"
    body = b"z" * 1000000

    def huge(conn):  # 20 MB per answer: counted as it comes, never kept
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (20 * len(body)))
        for _ in range(20):
            conn.sendall(body)

    cases = ((lambda conn: conn.sendall(chunked), 0, None), (huge, 0, None),
             (lambda conn: conn.sendall(b"GARBAGE\r\n\r\n") or False, 1, "bad response: bad status line"))
    for answer, code, kind in cases:
        srv = _raw_server(answer)
        try:
            done, _, results = smoke("--url", "http://127.0.0.1:%d/" % srv.getsockname()[1], "--duration", 1,
                                     "--connections", 2)
        finally:
            srv.close()
        facts = results["url"]["facts"]
        assert done.returncode == code and facts["count"] > 0, facts
        assert (kind is None and facts["errors"] == 0) or any(k.startswith(kind) for k in facts["errors_by_kind"])


def test_a_load_for_another_host_is_announced_first():
    spec = perf.load({"targets": [{"name": "far", "url": "http://10.1.2.3/", "rate": 10, "duration": 5},
                                  {"name": "near", "url": "http://127.0.0.1:9/"}]})
    assert perf.notice(spec) == ["smoke.py perf: sending about 50 requests (10/s for 5s) to 10.1.2.3 (far)"]


def test_abort_on_fail_stops_once_a_threshold_cannot_be_met(server):
    started = time.monotonic()
    done, _, results = smoke("--url", server + "/latency?error_rate=0.5", "--requests", 100000, "--connections", 2,
                             "--threshold", "error_rate < 0.01", "--abort-on-fail")
    facts = results["url"]["facts"]
    assert done.returncode == 1 and facts["count"] < 20000 and time.monotonic() - started < 30, facts["count"]
    assert "aborted early (abort_on_fail): " in results["url"]["message"] and "more than the 999" in facts["aborted"]
    done, _, results = smoke("--url", server + "/latency?delay_ms=1&stall_every=50&stall_ms=300", "--duration", 20,
                             "--connections", 1, "--threshold", "max_ms < 100", "--abort-on-fail")
    facts = results["url"]["facts"]
    assert done.returncode == 1 and facts["duration_s"] < 5 and "an answer took" in facts["aborted"], facts


def test_progress_on_a_terminal_while_the_load_runs(server):
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--url", server + "/latency", "--duration", "1.6",
                             "--connections", "2"], stdout=subprocess.PIPE, stderr=slave,
                            env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    seen = read_terminal(master)
    assert proc.returncode == 0 and json.loads(out)["status"] == "pass"
    assert b"perf url: " in seen and b" requests, " in seen and b" req/s" in seen, seen


def test_sorted_shares_merge_into_one_sorted_array():
    import random
    values = [random.random() for _ in range(5000)]
    total = load.Samples()
    for share in (values[:2000], values[2000:4500], values[4500:]):
        part = load.Samples()
        part.latencies = array.array("d", share)
        part.sort()
        total.merge(load.Samples.load(part.dump()))
    assert total.ordered and list(total.latencies) == sorted(values)


def test_a_kill_9_of_smoke_py_takes_its_load_workers_with_it(server):
    marker = "/latency?kill9=%d" % os.getpid()
    proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--url", server + marker, "--duration", "30",
                             "--connections", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.kill()
    proc.wait()

    def left():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as fh:
                    if marker.encode() in fh.read():
                        with open("/proc/%s/stat" % entry, "rb") as fh:
                            if fh.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                                found.append(entry)
            except OSError:
                continue
        return found
    deadline = time.monotonic() + 5
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == []


def test_what_a_new_user_tripped_on(server, tmp_path):
    # a refusing server has no throughput; an open load keeps its schedule even then
    done, _, results = smoke("--url", "http://127.0.0.1:9/", "--rate", 50, "--duration", 1, "--threshold", "rps > 10")
    facts = results["url"]["facts"]
    assert done.returncode == 1 and facts["rps"] == 0.0 and facts["count"] <= 60, facts
    # a name that does not resolve is one error, said plainly
    done, _, results = smoke("--url", "http://no-such-host.invalid/", "--duration", 1)
    assert done.returncode == 3 and "cannot resolve no-such-host.invalid" in results["url"]["message"]
    # requests due that no connection was free to send are counted, not dropped
    done, _, results = smoke("--url", server + "/latency?delay_ms=50", "--rate", 200, "--connections", 2,
                             "--duration", 1)
    facts = results["url"]["facts"]
    assert done.returncode == 1 and facts["errors_by_kind"].get("not sent: no connection free when due", 0) > 100
    # a unit in a threshold is exit 2 before any load
    done, _, _ = smoke("--url", server + "/latency", "--threshold", "p95_ms < 200ms")
    assert done.returncode == 2 and "write it without a unit" in done.stderr
    # a command that cannot run is an error, not a slow measurement
    config = {"targets": [{"name": "cli", "command": ["no-such-tool-xyz"], "runs": 3}]}
    done, _, results = smoke(config=config, tmp_path=tmp_path)
    assert done.returncode == 3 and "no-such-tool-xyz" in results["cli"]["message"]


def test_an_interrupted_run_keeps_the_targets_done(server, tmp_path):
    config = {"targets": [{"name": "first", "url": server + "/latency", "requests": 20},
                          {"name": "second", "url": server + "/latency", "duration": 30}]}
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"perf": config}))
    proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 143 and results["first"]["status"] == "pass"
    assert results["second"]["status"] == "skip" and results["second"]["message"] == "interrupted"
