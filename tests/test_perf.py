"""perf against real servers on 127.0.0.1: the fixture's /latency knobs, a refusing port, nginx."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import NOBODY, ROOT, as_root, read_terminal, shared_dir, wait_for_port
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


@as_root
def test_a_baseline_another_user_could_have_written_is_exit_2(server, tmp_path):
    """A baseline decides whether p95_ratio < 1.5 passes: nobody's file, or root's that all may
    write, in a shared directory, is not read."""
    saved = tmp_path / "baseline.json"
    assert smoke("--url", server + "/health", "--requests", 20, "--save-baseline", saved)[0].returncode == 0
    for owner, mode in ((NOBODY, 0o644), (0, 0o666)):
        planted = shared_dir(tmp_path) / ("base-%d.json" % owner)
        planted.write_text(saved.read_text())
        os.chown(str(planted), owner, owner)
        planted.chmod(mode)
        done, report, _ = smoke("--url", server + "/health", "--requests", 20, "--baseline", planted,
                                "--threshold", "p95_ratio < 1.5")
        assert done.returncode == 2 and report is None and len(done.stderr.splitlines()) == 1, done.stderr
        assert "--baseline: %s: not read: it " % planted in done.stderr, done.stderr


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
        wait_for_port(port)
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


# -- the hostile tester's findings, each against real sockets and processes ------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _serve(handler, accepted=None):
    """A server on 127.0.0.1 calling handler(conn, request) for each request head; the socket.
    accepted, a list: gets each connection's address."""
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def handle(conn):
        with conn:
            buffer = b""
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                    while b"\r\n\r\n" in buffer:
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        if handler(conn, head) is False:
                            return
            except OSError:
                pass

    def accept():
        while True:
            try:
                conn, address = srv.accept()
            except OSError:
                return
            if accepted is not None:
                accepted.append(address)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return srv


def _url(srv):
    return "http://127.0.0.1:%d/" % srv.getsockname()[1]


def _load(port, **fields):
    """A probes.load.Load for GET / on 127.0.0.1:port."""
    values = dict(connections=1, requests=None, duration=1.0, rate=None, warmup=0.0, timeout=5.0)
    values.update(fields)
    return load.Load("127.0.0.1", port, False, "127.0.0.1", False, None,
                     load.request_bytes("GET", "127.0.0.1", "/", {}, None), **values)


def test_a_descriptor_limit_fits_the_connections_and_emfile_is_an_error():
    import resource
    srv = _serve(lambda conn, head: conn.sendall(OK))
    try:
        def low(limit):
            return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(
                resource.RLIMIT_NOFILE)[1]))
        done = subprocess.run([sys.executable, SMOKE, "perf", "--url", _url(srv), "--duration", "1",
                               "--connections", "1000"], capture_output=True, text=True, timeout=60,
                              preexec_fn=low(20))
        result = json.loads(done.stdout)["results"][0]
        assert done.returncode == 0 and result["status"] == "pass", (done.stderr, result)
        assert "1 connection, not 1000: this process may open only 20 files (ulimit -n)" in result["message"]
        # EMFILE in the middle of a load (past what was fitted) is the tool's trouble: an error, never a fail
        script = ("import json, sys; sys.path.insert(0, %r)\n"
                  "from checks import perf; from checks.probes import load, samples\n"
                  "spec = perf.load({'targets': [{'name': 'a', 'url': %r, 'connections': 200, 'duration': 0.5}]})\n"
                  "facts = samples.summarise(load.run(spec.targets[0].load, workers=1))\n"
                  "print(json.dumps([facts.get('trouble'), facts['errors']]))\n" % (str(ROOT), _url(srv)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                              preexec_fn=low(40))
        trouble, errors = json.loads(done.stdout)
        assert "Too many open files" in trouble and "not the server" in trouble and errors == 0, done.stdout
    finally:
        srv.close()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: the load runs in one process, no worker to kill")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSTOP])
def test_a_load_worker_killed_or_stopped_mid_run_makes_the_result_an_error(server, signum):
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--url", server + "/latency", "--duration", "3",
                             "--connections", "4", "--timeout", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)
    workers = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry, "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == proc.pid:
                    workers.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    if not workers:
        pytest.skip("one CPU: the load runs in one process, with no worker to lose")
    os.kill(workers[0], signum)
    out, err = proc.communicate(timeout=60)
    result = json.loads(out)["results"][0]
    assert proc.returncode == 3 and result["status"] == "error", (result, err)
    if signum == signal.SIGKILL:
        assert result["message"] == "load worker died (signal 9): its samples are lost"
    else:  # a stopped worker is given up after the load's end, its timeout and a grace: no hang
        assert "did not answer within" in result["message"] and time.monotonic() - started < 20


def _tls_server(reset_every):
    """A TLS server answering each connection once (then closing), resetting every Nth one at accept."""
    import ssl
    import struct
    import threading
    from fixtures.service import CERT_FILE, KEY_FILE
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT_FILE, KEY_FILE)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)

    def serve(conn):
        try:
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        except (OSError, ValueError):
            pass

    def accept():
        count = 0
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            count += 1
            if count % reset_every == 0:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return srv


def test_a_tls_server_resetting_some_connections_gives_reset_errors_and_the_load_goes_on():
    srv = _tls_server(5)
    try:
        for connections in (1, 4):
            done, _, results = smoke("--url", "https://127.0.0.1:%d/" % srv.getsockname()[1], "--insecure",
                                     "--duration", 1, "--connections", connections, "--threshold", "ok > 10")
            facts = results["url"]["facts"]
            assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stderr, results)
            assert facts["errors_by_kind"].get("reset", 0) > 0 and facts["ok"] > 3 * facts["errors"], facts
            assert set(facts["errors_by_kind"]) <= {"reset", "closed", "tls: SSLEOFError", "tls: EOF"}, facts
    finally:
        srv.close()


def test_an_open_load_sends_exactly_its_schedule():
    srv = _serve(lambda conn, head: conn.sendall(OK))
    try:
        for rate in (100, 333):
            done, _, results = smoke("--url", _url(srv), "--rate", rate, "--duration", 1, "--connections", 1,
                                     "--threshold", "errors < 1")
            facts = results["url"]["facts"]
            assert done.returncode == 0 and facts["count"] == rate and facts["errors"] == 0, facts
        started = time.monotonic()  # reaching --requests ends the schedule: the rest is not "not sent"
        done, _, results = smoke("--url", _url(srv), "--rate", 100, "--requests", 50, "--duration", 2)
        facts = results["url"]["facts"]
        assert done.returncode == 0 and facts["count"] == 50 and facts["errors"] == 0, facts
        assert facts["duration_s"] < 0.8 and time.monotonic() - started < 10
    finally:
        srv.close()
    # the schedule counts in integers: 0.1/s for 30 s is 3 requests, not 4; 7/s for 0.5 s is 4 (due at 0, 1/7, ...)
    spec = _load(1, rate=0.1, duration=30.0)
    assert load.schedule(spec) == (0, 3) and load.schedule(spec._replace(rate=7.0, duration=0.5)) == (0, 4)



def test_an_open_load_never_counts_not_sent_on_a_healthy_server():
    # the last request is due a few µs (3/s for 0.66667 s), or under a millisecond (1000/s for 0.9999 s),
    # before the end: a wait for it rounded up to a whole millisecond wakes past the end, and it still goes
    srv = _serve(lambda conn, head: conn.sendall(OK))
    try:
        for rate, duration, planned in ((3, 0.66667, 3), (1000, 0.9999, 1000), (7, 0.5, 4)):
            for _ in range(2):
                done, _, results = smoke("--url", _url(srv), "--rate", rate, "--duration", duration,
                                         "--threshold", "errors < 1")
                facts = results["url"]["facts"]
                assert done.returncode == 0 and facts["count"] == planned and facts["errors"] == 0, (rate, facts)
    finally:
        srv.close()



def test_an_open_load_whose_tool_stalls_across_its_end_still_sends_what_came_due():
    # smoke.py itself stopped for 1.5 s across the load's end, as a busy machine may deschedule it:
    # once it runs again, what came due meanwhile goes out on the connections free, not "not sent"
    srv = _serve(lambda conn, head: conn.sendall(OK))
    try:
        proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--url", _url(srv), "--rate", "200", "--duration",
                                 "2", "--threshold", "errors < 1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(1.4)  # its start-up and about a second of load
        stalled = [proc.pid] + _children(proc.pid)
        for pid in stalled:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
        for pid in stalled:
            os.kill(pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        srv.close()
    facts = json.loads(out)["results"][0]["facts"]
    assert proc.returncode == 0 and facts["count"] == 400 and facts["errors"] == 0, (facts, err)
    assert facts["max_ms"] > 500, facts  # each measured from its due time: the stall is in the latencies


def _children(parent):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry, "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _slow_handshake_server(delay):
    """A TLS server on 127.0.0.1 that waits `delay` seconds before each handshake, then answers OK."""
    import ssl
    import threading
    from fixtures.service import CERT_FILE, KEY_FILE
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT_FILE, KEY_FILE)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve(conn):
        try:
            time.sleep(delay)
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(65536)
                        if not chunk:
                            return
                        data += chunk
                    tls.sendall(OK)
        except (OSError, ValueError):
            pass

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return srv


def test_an_open_load_sends_what_was_due_on_connections_still_being_made_at_its_end():
    # two requests due within 20 ms, their connections' handshakes take 300 ms: sent when they are
    # made, each latency from its due time; none "not sent"
    srv = _slow_handshake_server(0.3)
    try:
        done, _, results = smoke("--url", "https://127.0.0.1:%d/" % srv.getsockname()[1], "--insecure",
                                 "--rate", 100, "--duration", 0.02, "--threshold", "errors < 1")
        facts = results["url"]["facts"]
        assert done.returncode == 0 and facts["count"] == 2 and facts["errors"] == 0, facts
        assert facts["min_ms"] >= 280, facts
    finally:
        srv.close()


def test_a_head_and_its_body_in_separate_reads_and_alternating_heads_are_read_as_sent():
    # the head of the answer before is remembered byte for byte: an answer that only starts like it,
    # or comes in pieces, is still read whole, and one with another status is counted as that
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HTTP/1.1 503 No\r\nContent-Length: 5\r\n\r\n"]
    sent = []

    def answer(conn, head):
        data = answers[len(sent) % 7 == 6]
        sent.append(1)
        conn.sendall(data)
        time.sleep(0.002)
        conn.sendall(b"he")
        time.sleep(0.002)
        conn.sendall(b"llo")
    srv = _serve(answer)
    try:
        samples = load.run(_load(srv.getsockname()[1], connections=1, requests=70, duration=None), workers=1)
    finally:
        srv.close()
    assert (len(samples.latencies), dict(samples.errors)) == (60, {"503": 10}), dict(samples.errors)
    assert min(samples.latencies) >= 4, min(samples.latencies)


class _Flaky:
    """A server on a fixed port that can go away (listener and connections closed) and come back."""

    def __init__(self):
        import threading
        self.port, self.conns, self.srv = _free_port(), [], None
        self.lock = threading.Lock()
        self.start()

    def start(self):
        import threading
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(128)
        self.srv = srv

        def handle(conn):
            try:
                while conn.recv(65536):
                    conn.sendall(OK)
            except OSError:
                pass

        def accept():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with self.lock:
                    self.conns.append(conn)
                threading.Thread(target=handle, args=(conn,), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()

    def stop(self):
        import struct
        self.srv.close()
        with self.lock:
            for conn in self.conns:
                try:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.conns = []


def test_an_open_load_keeps_its_schedule_through_a_server_gone_for_a_moment():
    flaky = _Flaky()
    try:
        proc = subprocess.Popen([sys.executable, SMOKE, "perf", "--url", "http://127.0.0.1:%d/" % flaky.port,
                                 "--rate", "100", "--duration", "3", "--connections", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.2)
        flaky.stop()
        time.sleep(0.3)
        flaky.start()
        out, err = proc.communicate(timeout=60)
    finally:
        flaky.stop()
    facts = json.loads(out)["results"][0]["facts"]
    kinds = facts["errors_by_kind"]
    assert facts["duration_s"] > 2.8 and facts["count"] == 300, facts
    assert 5 <= kinds.get("refused", 0) + kinds.get("reset", 0) + kinds.get("closed", 0) <= 60, kinds
    assert facts["ok"] > 220 and not kinds.get(load.NOT_SENT), facts


def test_an_open_load_behind_its_schedule_sleeps_rather_than_spins():
    srv = _serve(lambda conn, head: time.sleep(1) or conn.sendall(OK))
    try:
        before = time.process_time()
        samples = load.run(_load(srv.getsockname()[1], connections=2, rate=10.0, duration=2.0), workers=1)
        used = time.process_time() - before
    finally:
        srv.close()
    assert used < 0.5 and samples.errors[load.NOT_SENT] > 10, (used, dict(samples.errors))


@pytest.mark.parametrize("model", [[], ["--rate", "50"]])
def test_connection_errors_during_warmup_are_not_counted(model):
    import threading
    port = _free_port()
    late = []

    def start():
        late.append(_Flaky.__new__(_Flaky))
        late[0].port, late[0].conns, late[0].lock = port, [], threading.Lock()
        late[0].start()
    timer = threading.Timer(0.8, start)
    timer.start()
    try:
        done, _, results = smoke("--url", "http://127.0.0.1:%d/" % port, "--warmup", 2, "--duration", 1,
                                 "--connections", 2, *model)
    finally:
        timer.cancel()
        if late:
            late[0].stop()
    facts = results["url"]["facts"]
    assert done.returncode == 0 and facts["errors"] == 0 and facts["ok"] > 20, facts


def test_interim_answers_are_skipped_and_invalid_ones_are_bad_responses():
    def interim(first):
        def answer(conn, head):
            conn.sendall(first)
            time.sleep(0.02)
            conn.sendall(OK)
        return answer
    def sends(data):
        return lambda conn, head: conn.sendall(data)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    cases = [
        (interim(b"HTTP/1.1 100 Continue\r\n\r\n"), None),
        (interim(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"), None),
        (sends(b"HTTP/1.1 000 Weird\r\nContent-Length: 2\r\n\r\nok"),
         'bad response: bad status line "HTTP/1.1 000 Weird"'),
        (sends(b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok"),
         'bad response: bad status line "HTTP/1.1 2000 OK"'),
        (sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 50\r\n\r\nok"),
         "bad response: conflicting Content-Length headers"),
        (sends(chunked + b"0x2\r\nab\r\n0\r\n\r\n"),
         'bad response: bad chunk size "0x2"'),
        (sends(chunked + b"-2\r\nabc\r\n0\r\n\r\n"),
         'bad response: bad chunk size "-2"'),
        (sends(b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
         "bad response: whitespace before the colon of Content-Length"),
    ]
    for answer, kind in cases:
        srv = _serve(answer)
        try:
            done, _, results = smoke("--url", _url(srv), "--duration", 0.5, "--connections", 1, "--timeout", 3)
        finally:
            srv.close()
        facts = results["url"]["facts"]
        if kind is None:  # the final answer is the one measured: after the interim one and the 20 ms
            assert done.returncode == 0 and facts["errors"] == 0 and facts["min_ms"] >= 19, facts
        else:  # at once, not after the 3 s timeout
            assert done.returncode == 1 and list(facts["errors_by_kind"]) == [kind] and facts["count"] > 5, facts


def test_the_run_deadline_bounds_the_load(server, tmp_path):
    started = time.monotonic()
    done, _, results = smoke("--url", server + "/latency", "--duration", 6, "--deadline", 1.5)
    assert time.monotonic() - started < 4.5 and done.returncode == 1, results
    assert results["url"]["status"] == "fail"
    assert results["url"]["message"].startswith("deadline exceeded (--deadline 1.5s): the load was cut short")
    config = {"targets": [{"name": "slow", "command": ["sleep", "5"], "runs": 3},
                          {"name": "after", "url": server + "/latency", "duration": 1}]}
    started = time.monotonic()
    done, _, results = smoke("--deadline", 1, config=config, tmp_path=tmp_path)
    assert time.monotonic() - started < 4 and done.returncode == 1, results
    assert results["slow"]["status"] == "fail" and "deadline exceeded (--deadline 1s)" in results["slow"]["message"]
    assert results["after"] == dict(results["after"], status="fail",
                                    message="deadline exceeded (--deadline): not started")


def test_abort_on_fail_limits_are_exact_and_follow_the_load_as_run(server, tmp_path):
    def limit(threshold, requests=100):
        spec = perf.load({"targets": [{"name": "a", "url": "http://127.0.0.1:9/", "requests": requests,
                                       "thresholds": [threshold]}]})
        return perf._with_limits(spec.targets[0].load, spec.targets[0].thresholds).max_errors
    # 0.29 * 100 is 28.999999999999996 and 0.07 * 100 is 7.000000000000001: neither moves a limit
    assert [limit("error_rate <= 0.29"), limit("error_rate < 0.29"), limit("error_rate < 0.07")] == [29, 28, 6]
    assert [limit("errors < 3"), limit("errors <= 2.5"), limit("error_rate < 0.01", 1000)] == [2, 2, 9]
    # configured for 100 requests (limit 0), run with --requests 1000: the limit is the 1000's, 9
    config = {"targets": [{"name": "a", "url": server + "/latency?error_rate=0.5", "requests": 100,
                           "connections": 1, "abort_on_fail": True, "thresholds": ["error_rate < 0.01"]}]}
    done, _, results = smoke("--requests", 1000, config=config, tmp_path=tmp_path)
    message = results["a"]["message"]
    assert done.returncode == 1 and "more than the 9 the thresholds allow" in message, message
    assert "are of the %d requests sent, not the 1000 planned" % results["a"]["facts"]["count"] in message


def test_a_secret_a_server_reflects_is_masked_before_any_excerpt_is_cut():
    token = "tok" + "".join("%02x" % i for i in range(33)) + "z"  # 70 characters

    def reflect(conn, head):
        values = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                  if line.lower().startswith(b"authorization:")]
        if values:  # a connection closed before its request came says nothing
            conn.sendall(values[0] + b" 200\r\nContent-Length: 2\r\n\r\nok")
    srv = _serve(reflect)
    try:
        outputs = []
        for form in ("json", "text"):
            done = subprocess.run([sys.executable, SMOKE, "perf", "--url", _url(srv), "--requests", "5",
                                   "--connections", "1", "--header", "Authorization: Bearer " + token, "--format",
                                   form], capture_output=True, text=True, timeout=60)
            assert done.returncode == 1, done.stderr
            outputs.append(done.stdout + done.stderr)
    finally:
        srv.close()
    assert 'bad status line "*** 200" x5' in outputs[1], outputs[1]
    for out in outputs:
        assert not [token[i:i + 6] for i in range(len(token) - 5) if token[i:i + 6] in out], out


def test_the_threshold_language_on_perf_metrics(server):
    done, _, results = smoke("--url", server + "/latency", "--requests", 50, "--threshold",
                             "errors_by_kind.timeout < 1", "--threshold", 'errors_by_kind["bad response: x"] == 0')
    assert done.returncode == 0 and results["url"]["facts"]["observed"]["errors_by_kind.timeout < 1"] == 0, results
    for threshold, words in (("p95_ms < NaN", "is not a finite number"), ("p95_ms < 1e400", "is not a finite number"),
                             ("p95_ms.x < 3", "p95_ms is a number: it has no 'x'"),
                             ("errors_by_kind.timeout.x < 1", "errors_by_kind.timeout is a number")):
        done, _, _ = smoke("--url", server + "/latency", "--requests", 5, "--threshold", threshold)
        assert done.returncode == 2 and repr(threshold) in done.stderr and words in done.stderr, done.stderr
    done = subprocess.run([sys.executable, SMOKE, "perf", "--url", server + "/latency", "--requests", "50",
                           "--threshold", "p95_ms<200", "--threshold", "len(errors_by_kind) == 0", "--format", "text"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "threshold len(errors_by_kind) == 0: observed 0" in done.stdout, done.stdout
    observed = [line for line in done.stdout.splitlines() if "threshold p95_ms<200: observed " in line][0]
    assert float(observed.rsplit(" ", 1)[1]) > 0, observed


def test_save_baseline_is_checked_before_the_load_and_a_failed_write_is_said_on_the_target(server, tmp_path):
    for path, words in ((tmp_path / "no" / "b.json", "the directory does not exist"), (tmp_path, "is a directory")):
        started = time.monotonic()
        done, _, _ = smoke("--url", server + "/latency", "--duration", 5, "--save-baseline", path)
        assert done.returncode == 2 and words in done.stderr and time.monotonic() - started < 4, done.stderr
    config = {"targets": [{"name": "a", "url": server + "/latency", "requests": 5}],
              "save_baseline": str(tmp_path / "no" / "b.json")}
    done, _, _ = smoke(config=config, tmp_path=tmp_path)
    assert done.returncode == 2 and "perf.save_baseline" in done.stderr, done.stderr
    if os.path.exists("/dev/full"):  # written after the load, and it fails: said on the target, no check of its own
        done, report, results = smoke("--url", server + "/latency", "--requests", 20, "--save-baseline", "/dev/full")
        assert done.returncode == 3 and list(results) == ["url"] and report["summary"]["total"] == 1, results
        assert results["url"]["status"] == "error" and "--save-baseline /dev/full: not written" in \
            results["url"]["message"]


def test_small_things_a_hostile_tester_found(server, tls_service, tmp_path):
    # a TLS failure says its reason; --requests bounds the count, errors included
    done, _, results = smoke("--url", tls_service + "/", "--requests", 50, "--connections", 10)
    facts = results["url"]["facts"]
    assert facts["count"] == 50 and facts["errors_by_kind"] == {"tls: CERTIFICATE_VERIFY_FAILED": 50}, facts
    # one request opens one connection, not ten thousand
    accepted = []
    srv = _serve(lambda conn, head: conn.sendall(OK), accepted)
    try:
        samples = load.run(_load(srv.getsockname()[1], connections=10000, requests=1, duration=None))
        time.sleep(0.2)
    finally:
        srv.close()
    assert samples.count == 1 and len(samples.latencies) == 1 and len(accepted) == 1, accepted
    # an IPv6 address is shown as a URL writes it
    spec = perf.load({"targets": [{"name": "v6", "url": "http://[::1]:19500/x"}]})
    assert perf.plan(spec)[0].target.startswith("GET http://[::1]:19500/x, ")
    # a baseline number that is not a positive finite one gives no ratio, and says so
    baseline = tmp_path / "b.json"
    baseline.write_text('{"metrics": {"perf": {"targets": {"url": {"p50_ms": Infinity, "rps": 0}}}}}')
    done, _, results = smoke("--url", server + "/latency", "--requests", 20, "--baseline", baseline,
                             "--threshold", "p50_ratio < 2", "--threshold", "rps_ratio > 0.5")
    assert done.returncode == 3 and "the baseline's p50_ms is inf, not a positive number" in \
        results["url"]["message"] and "the baseline's rps is 0" in results["url"]["message"], results


def test_a_timed_command_cannot_be_left_running(tmp_path):
    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"perf": {"targets": [{"name": "cli", "command": ["true"], "runs": 3,
                                                      "leave_running": True}]}}))
    done = subprocess.run([sys.executable, SMOKE, "perf", "--config", str(path), "--validate"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "perf.targets[0].leave_running: a perf target is timed" in done.stderr
