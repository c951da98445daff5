"""smoke.py snapshot against real services the tests start: the fixture service over HTTP and HTTPS,
nginx from Debian, Prometheus, a Docker Engine where there is one, and raw sockets that answer garbage,
hang or never stop. The config it writes passes `health --config` on this host and fails, naming the
service, once that service is stopped. The host has other listeners (sshd, other people's tests):
each snapshot here is narrowed to the ports the test started (--ports), and probes nothing else.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import NOBODY, ROOT, as_root, planted_link, shared_dir, smoke, wait_for_port
from checks.snapshot import limit, web, write

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
NGINX_JSON = ('{"status": "ok", "uptime_seconds": 1234, "time": "2026-01-01T00:00:00Z", "request_id": "ab12cd", '
              '"version": "1.4.2", "requests_total": 99, "ready": true, "checks": {"db": {"state": "UP", '
              '"latency_ms": 3}}, "workers": [1, 2]}')


def start_service(tmp_path):
    """The fixture service as its own process, over HTTP and HTTPS (self-signed): (process, http, https)."""
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, str(ROOT / "fixtures" / "service.py"), "--port", "0", "--tls-port", "0",
                             "--ready-file", str(ready)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ports = json.loads(ready.read_text())
    return proc, ports["http"], ports["https"]


def start_nginx(tmp_path):
    """nginx answering JSON at /healthz and 404 elsewhere: (process, port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = " ".join("%s_temp_path %s;" % (kind, tmp_path / kind) for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        "worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;\n"
        "events { worker_connections 64; }\n"
        "http { access_log off; %s server { listen 127.0.0.1:%d; location = /healthz { default_type "
        "application/json; return 200 '%s'; } location / { return 404; } } }\n"
        % (tmp_path, tmp_path, temp, port, NGINX_JSON))
    proc = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return proc, port


def stop(proc):
    proc.terminate()
    proc.wait(10)


def snapshot(tmp_path, *args, name="snap.json"):
    """smoke.py snapshot ARGS --output tmp_path/NAME: (the finished process, the config or None)."""
    out = tmp_path / name
    done = smoke("snapshot", "--output", out, *args, timeout=30)
    return done, (json.loads(out.read_text()) if name.endswith(".json") and out.exists() else None)


def health(path, *args):
    done = smoke("health", "--config", path, "--state-dir", os.path.dirname(str(path)) + "/state", *args)
    return done, json.loads(done.stdout)


def checks_of(config):
    return {check["name"]: check for check in config["health"]["checks"]}


def failing(report):
    return sorted(r["name"] for r in report["results"] if r["status"] != "pass")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt install nginx)")
def test_a_snapshot_passes_on_its_host_and_fails_naming_the_service_stopped(tmp_path):
    service, http_port, https_port = start_service(tmp_path)
    nginx, port = start_nginx(tmp_path)
    try:
        done, config = snapshot(tmp_path, "--ports", "%d,%d" % (http_port, https_port), "--ports", str(port),
                                "--skip", "docker,host")
        assert done.returncode == 0, done.stderr
        found = checks_of(config)
        assert config["_comment"].startswith("Written by smoke.py") and os.uname().nodename in config["_comment"]
        nginx_checks = [name for name in found if name.startswith("nginx")]
        assert nginx_checks == ["nginx :%d" % port, "nginx :%d /healthz" % port, "nginx process"]
        assert found["nginx :%d" % port]["address"] == "127.0.0.1:%d" % port
        assert found["nginx process"]["executable"] == "nginx"
        # Only what stays: no uptime, time, id, version, counter or number that is a measure.
        assert found["nginx :%d /healthz" % port]["expect"] == [
            "status == 200", "json.ready == true", "json.status == ok", "json.checks.db.state == UP"]
        plain, tls = "service.py :%d" % http_port, "service.py :%d" % https_port
        assert found[plain + " /health"]["expect"] == ["status == 200", "json.status == healthy"]
        assert found[plain + " /api/health"]["expect"] == ["status == 200", "json.database == ok"]
        assert found[tls + " /health"]["url"] == "https://127.0.0.1:%d/health" % https_port
        assert found[tls + " /health"]["insecure"] is True
        assert "self-signed certificate" in found[tls + " /health"]["description"]
        assert "insecure" not in found[plain + " /health"]
        assert found["service.py process"]["pattern"].endswith(r"fixtures/service\.py( |$)")
        assert {tuple(check["tags"]) for check in found.values()} == {("tcp",), ("http",), ("process",)}
        assert ":%d nginx (pid %d) on 127.0.0.1: http: /healthz 200" % (port, nginx.pid) in done.stderr

        done, report = health(tmp_path / "snap.json")
        assert done.returncode == 0, failing(report)
        stop(nginx)
        done, report = health(tmp_path / "snap.json")
        assert done.returncode == 1
        assert {"nginx :%d" % port, "nginx :%d /healthz" % port} <= set(failing(report))
        assert not [name for name in failing(report) if name.startswith("service.py")]
    finally:
        stop(service)
        if nginx.poll() is None:
            stop(nginx)


def test_stable_fields_are_states_never_times_counters_ids_or_versions():
    doc = {"status": "UP", "ok": True, "code": 0, "uptime": "3 days", "startedAt": "today", "buildSha": "abcdef",
           "version": "v2", "count": 3, "load": 0.3, "name": "api-gateway", "token": "secret", "mode": "deadbeefcafe",
           "db": {"status": "degraded", "pool": {"active": 4, "state": "open", "inner": {"state": "too deep"}}},
           "items": ["a"], "note": "has 2 digits", "weird key": "fine", "nothing": None, "level": 2}
    assert web.stable_fields(doc) == [
        ("json.code", 0), ("json.name", "api-gateway"), ("json.ok", True), ("json.status", "UP"),
        ('json["weird key"]', "fine"), ("json.db.status", "degraded"), ("json.db.pool.state", "open")]
    assert web.expectations({"status": 204, "json": {"ready": "true"}}) == ["status == 204", 'json.ready == "true"']


def test_thresholds_leave_headroom_and_always_pass_today():
    assert [limit(used) for used in (2.4, 50, 84.9, 85.1, 94.5, 99.2, 100)] == [13, 60, 95, 95, 95, 100, 101]


def raw_server(kind, counted=None):
    """A socket on 127.0.0.1 that answers garbage, hangs (never accepts), streams a body that never
    ends, or counts the connections it takes: its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            if counted is not None:
                counted.append(1)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn):
        with conn:
            try:
                if kind == "garbage":
                    conn.sendall(b"\x00\x01garbage\r\n\r\n")
                elif kind == "endless":
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                    while True:
                        conn.sendall(b"x" * 65536)
            except OSError:
                pass

    if kind != "hang":
        threading.Thread(target=serve, daemon=True).start()
    return sock


def test_a_port_that_answers_garbage_hangs_or_never_ends_costs_at_most_its_timeout(tmp_path):
    servers = [raw_server(kind) for kind in ("garbage", "hang", "endless")]
    garbage, hang, endless = [s.getsockname()[1] for s in servers]
    try:
        started = time.monotonic()
        done, config = snapshot(tmp_path, "--ports", "%d,%d,%d" % (garbage, hang, endless), "--skip", "docker,host",
                                "--timeout", "4")  # a request gets a quarter: 1 s
        took = time.monotonic() - started
    finally:
        for server in servers:
            server.close()
    assert done.returncode == 0, done.stderr
    assert took < 3, took
    found = checks_of(config)
    assert {check["kind"] for check in found.values()} == {"tcp", "process"}  # nothing HTTP to expect
    assert {check["address"] for check in found.values() if check["kind"] == "tcp"} == {
        "127.0.0.1:%d" % port for port in (garbage, hang, endless)}
    assert "not HTTP (bad status line: '\\x00\\x01garbage')" in done.stderr
    assert re.search(r":%d \S+ \(pid %d\)" % (hang, os.getpid()), done.stderr) and "no answer within 1s" in done.stderr
    assert "over 1 MiB, left out: /health" in done.stderr


def test_dry_run_probes_nothing_and_says_what_it_would(tmp_path):
    counted = []
    server = raw_server("count", counted)
    port = server.getsockname()[1]
    try:
        done = smoke("snapshot", "--dry-run", "--ports", str(port), "--output", tmp_path / "snap.json")
        time.sleep(0.2)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    assert counted == [] and not (tmp_path / "snap.json").exists()
    assert "nothing is probed" in done.stdout
    # this process is named as pytest runs (pytest, or python under xdist's workers)
    assert re.search(r":%d \S+ \(pid %d\), bound on 127\.0\.0\.1: 127\.0\.0\.1:%d" % (port, os.getpid(), port),
                     done.stdout), done.stdout
    assert "/health, /healthz" in done.stdout


def test_a_listener_is_named_by_its_process_and_a_client_socket_is_no_listener(tmp_path):
    server = raw_server("count", [])
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    ephemeral = client.getsockname()[1]
    try:
        done, config = snapshot(tmp_path, "--only-listening")  # the whole host, but nothing is sent
    finally:
        client.close()
        server.close()
    assert done.returncode == 0, done.stderr
    addresses = [check.get("address") for check in config["health"]["checks"]]
    assert "127.0.0.1:%d" % port in addresses
    assert not [address for address in addresses if address and address.endswith(":%d" % ephemeral)]
    assert {check["kind"] for check in config["health"]["checks"]} <= {"tcp", "process"}
    named = [name for name in checks_of(config) if name.endswith(" :%d" % port)]  # pytest, or python (xdist)
    assert len(named) == 1 and checks_of(config)[named[0]]["kind"] == "tcp", named
    names = [check["name"] for check in config["health"]["checks"]]
    assert len(set(names)) == len(names)


def test_the_host_gets_memory_and_disk_checks_with_headroom(tmp_path):
    done, config = snapshot(tmp_path, "--skip", "tcp,docker")
    assert done.returncode == 0, done.stderr
    found = checks_of(config)
    assert found["memory"]["expect"][0].startswith("memory_percent < ")
    assert found["disk /"]["paths"] == ["/"] and found["disk /"]["tags"] == ["host"]
    assert not [name for name in found if name.startswith("disk /proc") or name.startswith("disk /sys")]
    done, report = health(tmp_path / "snap.json")
    assert done.returncode == 0, failing(report)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="reading TOML needs Python 3.11 (tomllib)")
def test_toml_output_loads_and_passes(tmp_path):
    service, http_port, https_port = start_service(tmp_path)
    try:
        done, _ = snapshot(tmp_path, "--ports", "%d,%d" % (http_port, https_port), "--skip", "host,docker",
                           name="snap.toml")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "snap.toml").read_text().startswith('_comment = "Written by smoke.py')
        said = done.stderr
        done, report = health(tmp_path / "snap.toml")
        assert done.returncode == 0, (failing(report), said)
        assert len(report["results"]) == 11, said  # each port's tcp and 4 endpoints, the process
    finally:
        stop(service)


def test_toml_and_json_are_written_on_every_python_and_round_trip():
    import tomllib
    doc = {"_comment": 'quotes " and \\ backslashes, tabs\t, newlines\n, bell\x07, del\x7f, é, 雪, 🙂',
           "health": {"defaults": {"timeout": 2.5, "tags": ["a b", "c"]}, "checks": [
               {"name": "x :1", "kind": "tcp", "address": "127.0.0.1:1", "retries": 0, "read_banner": False},
               {"name": "w", "kind": "http", "url": "http://h/", "headers": {"X-A": "1", "weird key": "2"},
                "expect": ['json["a.b"] == "x"', "status == 200"], "insecure": True}]},
           "empty": {}, "odd key.with dot": "v"}
    assert tomllib.loads(write.to_toml(doc)) == doc
    assert json.loads(write.to_json(doc)) == doc and '"tags": ["a b", "c"]' in write.to_json(doc)
    old = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python")
    if os.path.exists(old):  # the oldest Python writes it too, though it cannot read it back
        done = subprocess.run([old, str(ROOT / "smoke.py"), "snapshot", "--only-listening", "--format", "toml",
                               "--ports", "1"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert tomllib.loads(done.stdout)["health"] == {"checks": []}  # nothing listens on :1
        assert "nothing listens on :1 (--ports)" in done.stderr


@as_root
def test_output_is_refused_through_another_users_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = planted_link(shared_dir(tmp_path) / "snap.json", victim)
    done = smoke("snapshot", "--only-listening", "--ports", "1", "--output", link)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert "--output" in done.stderr and victim.read_text() == "precious"


def test_an_output_that_cannot_be_written_is_exit_3(tmp_path):
    done = smoke("snapshot", "--only-listening", "--ports", "1", "--output", "/dev/full")
    assert done.returncode == 3 and "cannot write /dev/full" in done.stderr, done.stderr


@as_root
def test_a_host_whose_proc_cannot_be_read_is_exit_3():
    done = subprocess.run(["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh",
                           sys.executable, str(ROOT / "smoke.py"), "snapshot", "--only-listening"],
                          capture_output=True, text=True, timeout=30)
    if "unshare" in done.stderr and done.returncode != 3:
        pytest.skip("no mount namespace here: %s" % done.stderr.strip())
    assert done.returncode == 3 and done.stdout == "", done.stderr
    assert done.stderr == "smoke.py snapshot: cannot read /proc/net/tcp: No such file or directory (Linux only)\n"


@pytest.mark.parametrize("args, said", [
    (["--exclude", "70000"], "a port is 1 to 65535"),
    (["--ports", "http"], "expected ports such as 8080,9090"),
    (["--ports", "9000-8000"], "a port is 1 to 65535, a range low-high"),
    (["--paths", "health"], "each starts with /"),
    (["--skip", "disks"], "expected some of tcp, http, process, docker, host"),
    (["--timeout", "0"], "must be at least 0.1"),
    (["--format", "toml", "--output", "x.json"], "smoke.py reads a file by its name's ending"),
])
def test_bad_usage_is_exit_2_in_one_line(args, said):
    done = smoke("snapshot", *args)
    assert done.returncode == 2 and said in done.stderr and done.stdout == "", done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_paths_replace_or_add_to_the_usual_ones(tmp_path):
    service, http_port, _ = start_service(tmp_path)
    try:
        done, config = snapshot(tmp_path, "--ports", str(http_port), "--paths", "/release,/health",
                                "--skip", "host,docker,process")
        assert done.returncode == 0, done.stderr
        assert list(checks_of(config)) == ["service.py :%d" % http_port, "service.py :%d /health" % http_port]
        done, config = snapshot(tmp_path, "--ports", str(http_port), "--paths", "+/gzip", "--dry-run")
        assert "/metrics, /gzip and" in done.stdout
    finally:
        stop(service)


@pytest.fixture
def prometheus_server(tmp_path):
    from fixtures import prometheus
    if prometheus.find_binary() is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus): real-server test skipped")
    service, http_port, _ = start_service(tmp_path)
    proc = None
    try:
        proc, port = prometheus.start("127.0.0.1:%d" % http_port, 0, str(tmp_path / "prometheus"))
        prometheus.wait_for_data(port, "smoke_fixture_up")
        yield port
    finally:
        if proc is not None:
            prometheus.stop(proc)
        stop(service)


def test_a_prometheus_found_gets_an_up_query(tmp_path, prometheus_server):
    port = prometheus_server
    done, config = snapshot(tmp_path, "--ports", str(port), "--skip", "host,docker")
    assert done.returncode == 0, done.stderr
    found = checks_of(config)
    up = found["prometheus :%d up" % port]
    assert (up["kind"], up["url"], up["query"]) == ("prometheus", "http://127.0.0.1:%d" % port, "up")
    assert up["expect"] == ["count >= 1", "values !contains 0"]
    assert "prometheus :%d /-/healthy" % port in found and found["prometheus process"]["executable"] == "prometheus"
    assert "/-/healthy 200, /-/ready 200, /metrics 200; Prometheus: 1 of 1 targets up" in done.stderr
    assert up["description"] == "1 target at snapshot time, all up"
    done, report = health(tmp_path / "snap.json")
    assert done.returncode == 0, failing(report)


DOCKER_SOCKET = "/run/docker.sock"


def test_running_containers_are_docker_checks(tmp_path):
    if not (os.path.exists(DOCKER_SOCKET) and shutil.which("docker")):
        pytest.skip("no Docker Engine on %s (run fixtures/docker-engine.sh as root): docker test skipped"
                    % DOCKER_SOCKET)
    env = dict(os.environ, DOCKER_HOST="unix://" + DOCKER_SOCKET)

    def docker(*args):
        return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=60, env=env)
    if docker("image", "inspect", "local/busybox:1").returncode != 0:
        pytest.skip("the engine has no local/busybox:1 (fixtures/docker-engine.sh builds it)")
    name = "smoke-snapshot-%d" % os.getpid()
    assert docker("run", "-d", "--init", "--name", name, "--network", "none", "local/busybox:1", "sleep",
                  "1000").returncode == 0
    try:
        done = smoke("snapshot", "--skip", "tcp,host", "--output", tmp_path / "snap.json", env={
            "DOCKER_HOST": "unix://" + DOCKER_SOCKET})
        assert done.returncode == 0, done.stderr
        check = checks_of(json.loads((tmp_path / "snap.json").read_text()))["docker " + name]
        assert (check["kind"], check["container"], check["tags"]) == ("docker", name, ["docker"])
        assert name in done.stderr
        only = ["--only", "docker " + name]  # other people's containers come and go: this test's alone
        done, report = health(tmp_path / "snap.json", *only)
        assert done.returncode == 0, failing(report)
        docker("stop", "-t", "0", name)
        done, report = health(tmp_path / "snap.json", *only)
        assert done.returncode == 1 and failing(report) == ["docker " + name]
    finally:
        docker("rm", "-f", name)


# --- hostile neighbours: names, addresses and ports another local user chooses ---------------------

NAMED_SERVER = r'''
import socket, sys, threading
name, body = sys.argv[1], sys.argv[2].encode()
with open("/proc/self/comm", "w") as fh:
    fh.write(name)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
print(sock.getsockname()[1], flush=True)
def answer(conn):
    with conn:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % len(body) + body)
while True:
    conn, _ = sock.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
'''


def named_server(name, body="{}", argv0=sys.executable):
    """A Python HTTP server that calls itself name (its comm, as `ps` shows it), started as argv0,
    answering body to every GET: (process, port)."""
    proc = subprocess.Popen([argv0, "-c", NAMED_SERVER, name, body], executable=sys.executable, stdout=subprocess.PIPE,
                            text=True, cwd="/", env=dict(os.environ, PYTHONHOME=sys.base_prefix))  # not by argv[0]
    return proc, int(proc.stdout.readline())


def test_a_service_named_like_a_variable_is_written_as_text_and_read_back_so(tmp_path):
    """A process called ${NOPE}, answering JSON keyed "${NOPE}" and "$${A}": the config says
    exactly that (${ written $${), so health neither expands root's environment into it nor
    stops at an unset variable, and $${A} reads back as $${A}, not ${A}."""
    proc, port = named_server("${NOPE}", json.dumps({"${NOPE}": "ok", "$${A}": "up", "a$b": "ok"}))
    try:
        done, config = snapshot(tmp_path, "--ports", str(port), "--skip", "host,docker")
        assert done.returncode == 0, done.stderr
        names = ["${NOPE} :%d" % port, "${NOPE} :%d /health" % port, "${NOPE} process"]
        assert list(checks_of(config)) == ["$" + name for name in names]  # as written: $${ is a literal ${
        written = checks_of(config)["$${NOPE} :%d /health" % port]["expect"]
        assert written == ['status == 200', 'json["$$${A}"] == up', 'json["$${NOPE}"] == ok', 'json["a$b"] == ok']
        env = {key: value for key, value in os.environ.items() if key not in ("NOPE", "A")}
        done = subprocess.run([sys.executable, str(ROOT / "smoke.py"), "health", "--config", str(tmp_path / "snap.json"),
                               "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60,
                              env=env)
        report = json.loads(done.stdout)
        assert done.returncode == 0, (failing(report), done.stderr)
        assert [r["name"] for r in report["results"]] == names  # a key read back as ${A} would be missing: a fail
    finally:
        stop(proc)


def test_every_string_reads_back_as_written_through_the_config_loader():
    import itertools

    from checks.config import interpolate
    from checks.secrets import Secrets
    from checks.snapshot import literal

    for length in range(7):
        for chars in itertools.product("${}a", repeat=length):
            text = "".join(chars)
            assert interpolate(literal(text), "x", Secrets(), environ={"a": "EXPANDED"}) == text, text


def test_two_names_alike_after_unicode_normalisation_get_two_names(tmp_path):
    first, one = named_server("caf\u00e9")
    second, two = named_server("cafe\u0301")
    try:
        done, config = snapshot(tmp_path, "--ports", "%d,%d" % (one, two), "--skip", "host,docker,http")
        assert done.returncode == 0, done.stderr
        names = ["caf\u00e9", "cafe\u0301"] if one < two else ["cafe\u0301", "caf\u00e9"]  # in port order
        assert [name for name in checks_of(config) if name.endswith("process") or name.endswith(")")] == [
            names[0] + " process", names[1] + " process (2)"]
        done, report = health(tmp_path / "snap.json")
        assert done.returncode == 0, (failing(report), done.stderr)
    finally:
        stop(first)
        stop(second)


def test_a_name_with_a_newline_cannot_forge_a_line(tmp_path):
    forged = "x\nsmoke.py snap"  # 15 characters: all a comm holds
    proc, port = named_server(forged)
    try:
        done, _ = snapshot(tmp_path, "--ports", str(port), "--skip", "host,docker,http")
        plan = smoke("snapshot", "--ports", str(port), "--dry-run")
    finally:
        stop(proc)
    assert done.returncode == 0 and plan.returncode == 0, done.stderr + plan.stderr
    assert all(line.startswith("smoke.py snapshot: ") for line in done.stderr.splitlines()), done.stderr
    assert ":%d x\\nsmoke.py snap (pid %d)" % (port, proc.pid) in done.stderr
    assert ":%d x\\nsmoke.py snap (pid %d)" % (port, proc.pid) in plan.stdout
    assert not [line for line in plan.stdout.splitlines() if line.startswith("smoke.py snap (")], plan.stdout


def test_a_process_named_only_blanks_gets_argv0s_name_or_none(tmp_path):
    """comm " " or "\t " (read stripped: "", as PR_SET_NAME's ""): two such processes once merged
    into one check " process" finding executable "", a tcp check " :PORT" and "held by  (pid
    N)". argv[0]'s name stands in when a config can hold it; else the owner is one not
    visible: a tcp check named port :PORT, and no process check."""
    servers = [named_server(" ", argv0=" x"), named_server("\t ", argv0="\x01"), named_server(" ", argv0="/opt/web-api")]
    ports = [port for _, port in servers[:2]]
    web_port = servers[2][1]
    try:
        done, config = snapshot(tmp_path, "--ports", ",".join(map(str, ports + [web_port])), "--skip",
                                "host,docker,http")
        assert done.returncode == 0, done.stderr
        found = checks_of(config)
        assert sorted(found) == sorted(["port :%d" % port for port in ports] + ["web-api :%d" % web_port,
                                                                                 "web-api process"])
        assert found["web-api process"]["executable"] == "web-api"
        assert all("its process not visible" in found["port :%d" % port]["description"] for port in ports)
        assert "held by  " not in done.stderr and "owner not visible" in done.stderr
        done, report = health(tmp_path / "snap.json")
        assert done.returncode == 0, failing(report)
    finally:
        for proc, _ in servers:
            stop(proc)


def test_a_listener_on_an_address_this_host_does_not_have_is_left_out(tmp_path):
    """IP_FREEBIND binds an address no interface has (no privilege needed): a connection there
    would leave the host, so it is named and never asked. 127.0.0.2, this host's, is asked."""
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_IP, getattr(socket, "IP_FREEBIND", 15), 1)
    foreign.bind(("198.51.100.7", 0))
    foreign.listen(4)
    local = socket.socket()
    local.bind(("127.0.0.2", 0))
    local.listen(4)
    far, near = foreign.getsockname()[1], local.getsockname()[1]
    try:
        done, config = snapshot(tmp_path, "--ports", "%d,%d" % (far, near), "--skip", "host,docker")
    finally:
        foreign.close()
        local.close()
    assert done.returncode == 0, done.stderr
    assert [check.get("address") for check in config["health"]["checks"] if check["kind"] == "tcp"] == [
        "127.0.0.2:%d" % near]
    assert re.search(r":%d \S+ \(pid %d\) on 198\.51\.100\.7: not an address of this host .*: left out, nothing is "
                     r"sent there" % (far, os.getpid()), done.stderr), done.stderr
    assert "nothing listens on :%d" % far not in done.stderr and "198.51.100.7" not in json.dumps(config)


def test_a_listener_on_a_link_local_address_is_checked_through_its_interface(tmp_path):
    """fe80:: addresses are one per link, so [fe80::...]:PORT without its interface reaches
    nothing: the snapshot's check failed at once on its own host. Written with the interface
    /proc/net/if_inet6 names (fe80::...%eth0), as the tcp kind and URLs take it, its tcp and
    http checks pass."""
    import ipaddress

    from checks import procfs

    links = [(address, names[0]) for address, names in procfs.interfaces().items()
             if ipaddress.ip_address(address).is_link_local and len(names) == 1]
    if not links:
        pytest.skip("no interface has a link-local IPv6 address")
    address, interface = links[0]
    sock = socket.socket(socket.AF_INET6)
    sock.bind((address, 0, 0, socket.if_nametoindex(interface)))
    sock.listen(16)
    sock.settimeout(0.2)
    port, stopping = sock.getsockname()[1], threading.Event()

    def serve():
        while not stopping.is_set():
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        done, config = snapshot(tmp_path, "--ports", str(port), "--skip", "host,docker,process")
        assert done.returncode == 0, done.stderr
        zoned = "[%s%%%s]:%d" % (address, interface, port)
        by_kind = {check["kind"]: check for check in config["health"]["checks"]}
        assert by_kind["tcp"]["address"] == zoned and by_kind["http"]["url"] == "http://%s/health" % zoned
        assert "on %s: http: /health 200" % zoned.rsplit(":", 1)[0] in done.stderr
        done, report = health(tmp_path / "snap.json")
        assert done.returncode == 0, failing(report)
    finally:
        stopping.set()
        server.join(5)
        sock.close()


@as_root
def test_a_listener_that_refuses_when_asked_is_left_out_named(tmp_path):
    """Listening on 0.0.0.0 but only for another interface's traffic (SO_BINDTODEVICE): a
    connection to 127.0.0.1 is refused, so a tcp check of it would fail at once."""
    devices = [name for _, name in socket.if_nameindex() if name != "lo"]
    if not devices:
        pytest.skip("no interface but lo")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, devices[0].encode())
    sock.bind(("0.0.0.0", 0))
    sock.listen(4)
    port = sock.getsockname()[1]
    try:
        done, config = snapshot(tmp_path, "--ports", str(port), "--skip", "host,docker")
    finally:
        sock.close()
    assert done.returncode == 0, done.stderr
    assert config["health"]["checks"] == []
    assert "nothing found to check in what --ports, --exclude and --skip leave: the config has no checks" in \
        done.stderr and "wrote 0 checks to " in done.stderr
    assert re.search(r":%d \S+ \(pid %d\) on 0\.0\.0\.0: refused the connection when asked: left out"
                     % (port, os.getpid()), done.stderr), done.stderr


def test_skipped_listeners_are_said_skipped_not_counted(tmp_path):
    done, _ = snapshot(tmp_path, "--skip", "tcp,docker,host")
    assert done.returncode == 0, done.stderr
    assert "smoke.py snapshot: listening ports: not read (--skip tcp)\n" in done.stderr
    assert "0 listening ports" not in done.stderr
    assert "not read the listening ports (--skip tcp)" in smoke("snapshot", "--skip", "tcp", "--dry-run").stdout


SILENT = r'''
import socket, sys, time
socks = []
for port in range(int(sys.argv[1]), int(sys.argv[2])):
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(64)  # never accepted: a connection completes, then nothing is said
        socks.append(sock)
    except OSError:
        sock.close()
print(len(socks), flush=True)
time.sleep(120)
'''


@as_root
def test_another_users_silent_ports_cannot_use_up_the_timeout_before_the_hosts_services(tmp_path):
    """nobody's 200 silent listeners, on ports below the service's: asked in port order, they
    would take the whole --timeout (200 x 2 schemes x 0.5 s over 16 workers); root's service
    is asked first, and what was cut is said."""
    silent = subprocess.Popen(["/usr/bin/python3", "-c", SILENT, "21000", "21200"], stdout=subprocess.PIPE, text=True,
                              cwd="/", preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    service, http_port, _ = start_service(tmp_path)
    try:
        assert int(silent.stdout.readline()) > 150
        assert http_port > 21200
        done, config = snapshot(tmp_path, "--ports", "21000-21199", "--ports", str(http_port), "--skip",
                                "host,docker", "--timeout", "2")
    finally:
        stop(service)
        silent.kill()
        silent.wait()
    assert done.returncode == 0, done.stderr
    assert "service.py :%d /health" % http_port in checks_of(config), done.stderr
    assert re.search(r"--timeout ran out before \d+ listeners were asked over HTTP \((\d+) of them other users'; "
                     r"root's and this user's are asked first\): :21\d\d", done.stderr), done.stderr
