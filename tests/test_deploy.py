"""deploy against the stand-in platform (fixtures/model_server.py), as real processes over real sockets."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import NEUTRAL, ROOT, gone
from fixtures import model_server

SMOKE = str(ROOT / "smoke.py")


@pytest.fixture
def platform():
    server, url = model_server.serve_in_thread()
    yield url
    server.shutdown()
    server.server_close()


def state(url):
    with urllib.request.urlopen(url + "/v1/state", timeout=5) as answer:
        return json.load(answer)


def lifecycle(url, fail=(), build_s=0.3, **extra):
    """The whole lifecycle against the platform at url; `fail` switches for the model deployed."""
    section = {
        "deploy": {"kind": "http", "method": "POST", "url": url + "/v1/models",
                   "json": {"name": "{name}", "build_s": build_s, "fail": list(fail)},
                   "expect": ["status == 201"], "capture": {"model_id": "json.id"}},
        "ready": {"kind": "http", "url": url + "/v1/models/{model_id}", "until": ['json.status in ["ready", "failed"]'],
                  "expect": ["json.status == ready"], "interval": 0.05, "timeout": 3},
        "predict": {"kind": "http", "method": "POST", "url": url + "/v1/models/{model_id}/predict",
                    "json": {"prompt": "hi", "seed": 42}, "expect": ["status == 200"], "repeat": 3, "identical": True},
        "predict_async": [
            {"name": "submit", "kind": "http", "method": "POST", "url": url + "/v1/models/{model_id}/jobs",
             "json": {"prompt": "hi", "seed": 7}, "expect": ["status == 202"], "capture": {"job_id": "json.job_id"}},
            {"name": "poll", "kind": "http", "url": url + "/v1/jobs/{job_id}",
             "until": ['json.state in ["succeeded", "failed"]'], "expect": ["json.state == succeeded"],
             "interval": 0.05, "timeout": 3},
            {"name": "result", "kind": "http", "url": url + "/v1/jobs/{job_id}/result",
             "expect": ["json.output exists"]}],
        "logs": {"kind": "http", "url": url + "/v1/models/{model_id}/logs",
                 "lines": ["Build succeeded", "Entrypoint initialization"], "interval": 0.05, "timeout": 1},
        "cleanup": {"kind": "http", "method": "DELETE", "url": url + "/v1/models/{model_id}",
                    "expect": ["status == 200"],
                    "retry_delay": 0.05},
    }
    section.update(extra)
    return section


def write(tmp_path, section):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"deploy": section}))
    return str(path)


def smoke(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, SMOKE] + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=str(NEUTRAL / "cwd"))


def deploy(tmp_path, section, *args, **kw):
    done = smoke("deploy", "--config", write(tmp_path, section), *args, **kw)
    try:
        report = json.loads(done.stdout)
    except ValueError:  # --dry-run, --format text
        report = None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def serving(handler):
    """handler (a BaseHTTPRequestHandler class) served on 127.0.0.1 by a thread: (the server,
    its base URL); the caller shuts it down."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1]


def send_json(handler, doc):
    """Answer 200 with doc as JSON, from a handler's do_GET (or do_POST ...)."""
    body = json.dumps(doc).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_the_green_path_runs_every_phase_and_cleans_up(platform, tmp_path):
    done, report, results = deploy(tmp_path, lifecycle(platform))
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values() if r["message"]]
    assert list(results) == ["deploy", "ready", "predict", "predict_async.submit", "predict_async.poll",
                             "predict_async.result", "logs", "cleanup"]
    assert results["ready"]["facts"]["polls"] > 1 and results["ready"].get("flaky") is None
    assert results["predict"]["facts"]["requests"] == 3
    after = state(platform)
    assert after["models"] == {} and len(after["deleted"]) == 1
    timings = report["metrics"]["deploy"]["targets"]["default"]
    assert timings["status"] == "pass" and timings["phases_ms"]["ready"] >= 250


@pytest.mark.parametrize("switch, phase, words", [
    ("build", "ready", 'json.status: expected == "ready", got "failed"'),
    ("never-ready", "ready", 'still not json.status in ["ready", "failed"] after 3.0s'),
    ("predict-500", "predict", "status: expected == 200, got 500"),
    ("nondeterministic", "predict", "not identical: answer 2 differs from answer 1 at json.output"),
    ("job-fails", "predict_async.poll", 'json.state: expected == "succeeded", got "failed"'),
    ("missing-log", "logs", 'still not body contains "Entrypoint initialization" after 1.0s'),
])
def test_every_failure_is_named_and_cleanup_still_runs(platform, tmp_path, switch, phase, words):
    done, _, results = deploy(tmp_path, lifecycle(platform, fail=[switch]))
    assert done.returncode == 1 and results[phase]["status"] == "fail", results[phase]
    assert words in results[phase]["message"], results[phase]["message"]
    later = list(results)[list(results).index(phase) + 1:-1]
    # what stands on it waits: everything after deploy and ready, the rest of its own phase after the others
    waiting = later if phase in ("deploy", "ready") else [n for n in later if n.split(".")[0] == phase.split(".")[0]]
    assert all(results[name]["status"] == "skip" for name in waiting)
    first_of_each = {name.split(".")[0]: name for name in reversed(later) if name not in waiting}
    assert all(results[name]["status"] != "skip" for name in first_of_each.values())  # a failed predict
    assert results["cleanup"]["status"] == "pass" and state(platform)["models"] == {}  # hides no logs
    if switch == "missing-log":
        assert "last lines seen: " in results[phase]["message"] and "Build succeeded" in results[phase]["message"]


def test_a_cleanup_that_fails_says_what_was_left_and_fails_the_run(platform, tmp_path):
    done, _, results = deploy(tmp_path, lifecycle(platform, fail=["delete-fails"]))
    assert done.returncode == 1 and results["cleanup"]["status"] == "fail"
    left = list(state(platform)["models"])
    assert len(left) == 1 and "left behind: model_id=%s, name=smoke-" % left[0] in results["cleanup"]["message"]
    report = json.loads(done.stdout)  # and said where a report says what went wrong around the checks
    assert report["problems"] == ["cleanup: %s" % results["cleanup"]["message"]]
    assert results["cleanup"]["attempts"] == 3  # retried


def test_a_capture_that_fails_leaves_a_loud_cleanup_failure_naming_what_may_be_left(platform, tmp_path):
    section = lifecycle(platform)
    section["deploy"]["capture"] = {"model_id": "json.idd"}
    done, _, results = deploy(tmp_path, section)
    assert done.returncode == 1 and "capture model_id: json.idd is missing" in results["deploy"]["message"]
    cleanup = results["cleanup"]
    assert cleanup["status"] == "fail" and "NOT CLEANED UP: needs {model_id}" in cleanup["message"]
    assert "name=smoke-" in cleanup["message"]


def test_a_compare_path_that_is_missing_fails_instead_of_passing(platform, tmp_path):
    section = lifecycle(platform, fail=["nondeterministic"])
    section["predict"]["compare"] = "json.outptu"
    done, _, results = deploy(tmp_path, section)
    assert done.returncode == 1
    assert results["predict"]["message"] == "not comparable: json.outptu is missing in answer 1"


def test_keep_on_failure_skips_cleanup_and_says_so(platform, tmp_path):
    done, _, results = deploy(tmp_path, lifecycle(platform, fail=["predict-500"]), "--keep-on-failure")
    left = list(state(platform)["models"])
    assert done.returncode == 1 and len(left) == 1
    assert "NOT CLEANED UP (--keep-on-failure): left for inspection: model_id=%s" % left[0] in \
        results["cleanup"]["message"]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_during_ready_still_cleans_up(platform, tmp_path, signum, code):
    section = lifecycle(platform, fail=["never-ready"])
    section["ready"]["timeout"] = 30
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", write(tmp_path, section)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not state(platform)["models"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    report = json.loads(out)
    results = {r["name"]: r for r in report["results"]}
    assert proc.returncode == code and report["interrupted"] == signal.Signals(signum).name, err
    assert results["cleanup"]["status"] == "pass" and state(platform)["models"] == {}
    assert results["predict"]["status"] == "skip"


def test_concurrent_predictions_overlap_and_each_may_differ(platform, tmp_path):
    section = lifecycle(platform)
    section["predict"] = {"kind": "http", "method": "POST", "url": platform + "/v1/models/{model_id}/predict",
                          "json": {"prompt": "hi", "seed": "{index}", "delay_s": 0.3}, "concurrency": 5,
                          "expect": ["status == 200", "json.seed >= 0"]}
    done, _, results = deploy(tmp_path, section)
    facts = results["predict"]["facts"]
    assert done.returncode == 0, results["predict"]
    assert facts["requests"] == 5 and facts["overlapped"] is True and facts["wall_ms"] < 1000
    assert all(latency >= 290 for latency in facts["latencies_ms"])


def test_a_matrix_fails_only_the_bad_target_and_removes_credentials(platform, tmp_path):
    section = lifecycle(platform)
    section["deploy"]["json"]["fail"] = "{fail}"
    section["targets"] = [
        {"name": "good", "vars": {"fail": []}, "credentials": {".trussrc": "[baseten]\napi_key = k-good-1234\n"}},
        {"name": "bad", "vars": {"fail": ["predict-500"]}, "credentials": {".trussrc": "api_key = k-bad-5678\n"}}]
    section["logs"] = {"kind": "command", "command": ["sh", "-c", "ls -l $HOME/.trussrc; echo $HOME > %s/{target}.home"
                                                      % tmp_path], "expect": ["stdout contains -rw-------"]}
    done, report, results = deploy(tmp_path, section)
    assert done.returncode == 1
    assert results["good/predict"]["status"] == "pass" and results["bad/predict"]["status"] == "fail"
    assert results["good/logs"]["status"] == "pass", results["good/logs"]
    targets = report["metrics"]["deploy"]["targets"]
    assert targets["good"]["status"] == "pass" and targets["bad"]["status"] == "fail"
    assert state(platform)["models"] == {}
    home = (tmp_path / "good.home").read_text().strip()
    assert home.startswith("/") and not os.path.exists(home)  # private, and removed at the end
    assert "k-good-1234" not in done.stdout + done.stderr


def test_bad_configs_are_exit_2_before_anything_is_deployed(platform, tmp_path):
    section = lifecycle(platform)
    section["predict"]["url"] = platform + "/v1/models/{modle_id}/predict"
    done, _, _ = deploy(tmp_path, section)
    assert done.returncode == 2 and "deploy.predict.url: {modle_id} is neither captured" in done.stderr
    section = lifecycle(platform)
    del section["cleanup"]
    done, _, _ = deploy(tmp_path, section)
    assert done.returncode == 2 and "deploy.cleanup: required" in done.stderr
    section = lifecycle(platform, targets=str(tmp_path / "missing.json"))
    done, _, _ = deploy(tmp_path, section)
    assert done.returncode == 2 and "deploy.targets: cannot read" in done.stderr
    section = lifecycle(platform)
    section["ready"]["untill"] = ["json.status == ready"]
    done, _, _ = deploy(tmp_path, section)
    assert done.returncode == 2 and "untill" in done.stderr
    assert state(platform)["models"] == {} and state(platform)["deleted"] == []


def test_quick_use_predicts_without_a_config(platform, tmp_path):
    created = json.load(urllib.request.urlopen(urllib.request.Request(
        platform + "/v1/models", data=b'{"name": "x", "build_s": 0}', method="POST"), timeout=5))
    url = platform + "/v1/models/%s/predict" % created["id"]
    done = smoke("deploy", "--predict-url", url, "--json", '{"prompt": "hi", "seed": 42}', "--expect", "status == 200",
                 "--repeat", "3", "--identical")
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["results"][0]["facts"]["requests"] == 3
    done = smoke("deploy", "--predict-url", url, "--json", '{"prompt": "hi", "seed": "{index}"}', "--concurrency", "4")
    assert done.returncode == 0 and json.loads(done.stdout)["results"][0]["facts"]["requests"] == 4
    done = smoke("deploy", "--predict-url", url, "--header", "Authorization: Bearer tok-0123456789", "--dry-run")
    assert done.returncode == 0 and "tok-0123456789" not in done.stdout + done.stderr
    done = smoke("deploy", "--predict-url", url, "--header", "Authorization: Bearer tok-0123456789",
                 "--expect", "status == 299")
    assert done.returncode == 1 and "tok-0123456789" not in done.stdout + done.stderr
    done = smoke("deploy", "--predict-url", url, "--json", "{not json")
    assert done.returncode == 2 and "--json: not valid JSON" in done.stderr


def test_secrets_never_reach_any_output(platform, tmp_path):
    section = lifecycle(platform)
    section["deploy"]["headers"] = {"Authorization": "Bearer ${PLATFORM_TOKEN}"}
    section["deploy"]["json"]["note"] = "${PLATFORM_TOKEN}"
    out = tmp_path / "r.json"
    env = {"PLATFORM_TOKEN": "tok-s3cret-value-42"}
    for args in ([], ["--dry-run"], ["--format", "text"]):
        done, _, _ = deploy(tmp_path, section, "--output", str(out), *args, env=env)
        assert "s3cret" not in done.stdout + done.stderr + (out.read_text() if out.exists() else "")


def test_a_spawned_server_is_owned_and_stopped(tmp_path):
    port_file = tmp_path / "ready.json"
    section = {
        "deploy": {"kind": "spawn", "command": [sys.executable, str(ROOT / "fixtures" / "model_server.py"),
                                                "--port", "0", "--ready-file", str(port_file)],
                   "log": str(tmp_path / "server.log")},
        "ready": {"kind": "file", "path": str(port_file), "json": True, "until": ["exists == true"],
                  "expect": ["json.port > 0"], "capture": {"port": "json.port", "pid": "json.pid"},
                  "interval": 0.05, "timeout": 10},
        "predict": {"kind": "http", "url": "http://127.0.0.1:{port}/v1/state", "expect": ["json.models exists"]},
        "logs": {"kind": "command", "command": ["cat", str(tmp_path / "server.log")],
                 "lines": ["model server: http://127.0.0.1:"], "interval": 0.05, "timeout": 5},
    }
    done, _, results = deploy(tmp_path, section)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    pid = json.loads(port_file.read_text())["pid"]
    from conftest import gone
    assert gone(pid)


def test_only_one_phase_runs_what_it_stands_on_and_cleans_up_once(platform, tmp_path):
    done, _, results = deploy(tmp_path, lifecycle(platform), "--only", "predict")
    assert done.returncode == 0
    ran = [name for name, r in results.items() if r["status"] != "skip"]
    assert ran == ["deploy", "ready", "predict", "cleanup"] and len(results) == 8
    assert state(platform)["models"] == {}


def slow_cleanup(url, seconds):
    """A cleanup that takes its time: a signal must not cut it short."""
    return {"kind": "command", "command": ["sh", "-c", "sleep %s; curl -sf -X DELETE %s/v1/models/{model_id}"
                                           % (seconds, url)], "retry_delay": 0.05}


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_a_signal_in_a_matrix_reports_every_target_and_lets_every_cleanup_finish(platform, tmp_path):
    section = lifecycle(platform, build_s=30)
    section["cleanup"] = slow_cleanup(platform, "{delay}")
    section["targets"] = [{"name": "t%d" % i, "vars": {"delay": delay}} for i, delay in enumerate((1.5, 0, 0))]
    section["concurrency"] = 3
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", write(tmp_path, section)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while len(state(platform)["models"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 130, err
    assert all(results["t%d/cleanup" % i]["status"] == "pass" for i in range(3)), results
    assert state(platform)["models"] == {}


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_a_signal_during_cleanup_is_recorded_and_the_cleanup_finishes(platform, tmp_path):
    section = lifecycle(platform, fail=["predict-500"])
    section["cleanup"] = slow_cleanup(platform, 1.5)
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", write(tmp_path, section)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not state(platform)["models"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.2)  # ready and predict are done: cleanup is sleeping
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 143 and results["cleanup"]["status"] == "pass", results["cleanup"]
    assert state(platform)["models"] == {}


def test_a_deploy_that_misses_its_expectation_is_still_cleaned_up(platform, tmp_path):
    section = lifecycle(platform)
    section["deploy"]["expect"] = ["status == 202"]  # it answers 201, with the id
    done, _, results = deploy(tmp_path, section)
    assert done.returncode == 1 and results["deploy"]["status"] == "fail"
    assert results["cleanup"]["status"] == "pass" and state(platform)["models"] == {}


def test_keep_on_failure_still_cleans_up_after_a_signal(platform, tmp_path):
    section = lifecycle(platform, fail=["never-ready"])
    section["ready"]["timeout"] = 30
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", write(tmp_path, section),
                             "--keep-on-failure"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not state(platform)["models"] and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143 and state(platform)["models"] == {}


def test_a_signal_while_the_create_is_answered_still_cleans_up(platform, tmp_path):
    # the model exists before its id reaches us: the create step is let finish so cleanup knows the id
    section = lifecycle(platform, fail=["slow-create"])
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", write(tmp_path, section)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not state(platform)["models"] and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, err
    assert state(platform)["models"] == {}, out


def test_the_deadline_bounds_the_whole_matrix(platform, tmp_path):
    section = lifecycle(platform, fail=["never-ready"])
    section["ready"]["timeout"] = 30
    section["targets"] = [{"name": "t%d" % i} for i in range(3)]
    section["concurrency"] = 1
    started = time.monotonic()
    done, _, _ = deploy(tmp_path, section, "--deadline", "1.5")
    assert done.returncode == 1 and time.monotonic() - started < 5
    assert state(platform)["models"] == {}


def test_more_bad_configs_are_exit_2(platform, tmp_path):
    section = lifecycle(platform)
    section["predict"]["compare"] = "json[["
    done, _, _ = deploy(tmp_path, section, "--validate")
    assert done.returncode == 2 and "deploy.predict.compare" in done.stderr
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([{"name": "a", "credentials": {".rc": "key = x"}}]))
    done, _, _ = deploy(tmp_path, lifecycle(platform, targets=str(targets)), "--validate")
    assert done.returncode == 2 and "credentials belong inline in the config" in done.stderr
    done, _, _ = deploy(tmp_path, lifecycle(platform, targets=[{"name": ""}]), "--validate")
    assert done.returncode == 2 and "a target's name is not empty" in done.stderr
    done = smoke("deploy", "--predict-url", platform + "/x", "--repeat", "0")
    assert done.returncode == 2 and "--repeat" in done.stderr


def test_steps_of_a_phase_with_one_name_are_exit_2_naming_the_field(platform, tmp_path):
    """Names pick steps (--only) and label results: two alike in a phase (the same text, the
    same after Unicode NFC, or a name that is another's place) are refused at load."""
    step = {"kind": "http", "url": platform + "/v1/state"}
    for phase in ("predict", "predict_async", "logs"):
        for names, said in (([{"name": "x"}, {"name": "x"}], "'%s.x' is taken (by deploy.%s[0])"),
                            ([{"name": "caf\u00e9"}, {"name": "cafe\u0301"}], "is taken (by deploy.%s[0])"),
                            ([{}, {"name": "1"}], "'%s.1' is taken (by deploy.%s[0])")):
            section = lifecycle(platform)
            section[phase] = [dict(step, **name) for name in names]
            done, _, _ = deploy(tmp_path, section, "--validate")
            assert done.returncode == 2 and "deploy.%s[1].name" % phase in done.stderr, done.stderr
            assert (said % ((phase,) * said.count("%s"))) in done.stderr, done.stderr
    section = lifecycle(platform, targets=[{"name": "us"}, {"name": "eu"}])
    section["predict"] = [dict(step, name="a"), dict(step, name="b")]  # alike across targets: their own prefixes
    done, _, _ = deploy(tmp_path, section, "--validate")
    assert done.returncode == 0, done.stderr


def test_a_concurrent_http_step_needs_a_socket_per_request_not_eight_files(service, tmp_path):
    """Under ulimit -n 1024: 126 requests at once run (one socket each, measured), 600 are exit 3
    naming what they need; a command keeps its estimate of 8 (its pipes)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    def run(*args):
        return subprocess.run([sys.executable, SMOKE, "deploy"] + list(args), capture_output=True, text=True,
                              timeout=120, cwd=str(NEUTRAL / "cwd"), preexec_fn=limit)

    done = run("--predict-url", service + "/echo", "--concurrency", "126")
    assert done.returncode == 0, done.stdout[-600:]
    assert json.loads(done.stdout)["results"][0]["facts"]["requests"] == 126
    done = run("--predict-url", service + "/echo", "--concurrency", "600")
    assert done.returncode == 3 and "concurrency 600 needs about 1200 open files; this process may open only 1024" \
        in json.loads(done.stdout)["results"][0]["message"]
    path = write(tmp_path, {"predict": {"kind": "command", "command": ["true"], "concurrency": 126}})
    done = run("--config", path)
    assert done.returncode == 3 and "concurrency 126 needs about 1008 open files" in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a file of another user (nobody) is made with chown")
def test_a_targets_file_another_user_could_write_is_refused(platform, tmp_path):
    """Its vars fill the steps' commands, as a config's would: the same rule as the config's."""
    from conftest import NOBODY
    targets = tmp_path / "targets.json"
    targets.write_text(json.dumps([{"name": "us", "vars": {"region": "us"}}]))
    os.chown(str(targets), NOBODY, NOBODY)
    done, _, _ = deploy(tmp_path, lifecycle(platform, targets=str(targets)), "--validate")
    assert done.returncode == 2 and "deploy.targets: %s: not read: it belongs to user %d" % (targets, NOBODY) \
        in done.stderr
    os.chown(str(targets), 0, 0)
    done, _, _ = deploy(tmp_path, lifecycle(platform, targets=str(targets)), "--validate")
    assert done.returncode == 0, done.stderr


def test_targets_from_a_url_fetched_at_start(platform, tmp_path):
    from http.server import BaseHTTPRequestHandler

    class Planes(BaseHTTPRequestHandler):
        def do_GET(self):
            send_json(self, [{"name": "plane-a"}, {"name": "plane-b"}])

        def log_message(self, *args):
            pass

    server, base = serving(Planes)
    try:
        url = base + "/planes"
        done, report, results = deploy(tmp_path, lifecycle(platform, targets=url))
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0 and set(report["metrics"]["deploy"]["targets"]) == {"plane-a", "plane-b"}
    assert results["plane-b/cleanup"]["status"] == "pass" and state(platform)["models"] == {}


def test_flag_errors_name_the_flag_and_a_retried_deploy_is_refused(platform, tmp_path):
    done = smoke("deploy", "--predict-url", platform + "/x", "--expect", "status = 200")
    assert done.returncode == 2 and "error: --expect 'status = 200': unknown operator" in done.stderr, done.stderr
    done = smoke("deploy", "--predict-url", platform + "/x", "--identical")
    assert done.returncode == 2 and "error: --identical compares answers" in done.stderr, done.stderr
    section = lifecycle(platform)
    section["deploy"]["retries"] = 2
    done, _, _ = deploy(tmp_path, section, "--validate")
    assert done.returncode == 2 and "deploy.deploy.retries: a retried deploy creates" in done.stderr


def test_spawned_processes_start_their_own_logs_and_are_stopped_visibly(tmp_path):
    port = __import__("conftest").free_port()
    engine_log, front_log = tmp_path / "engine.log", tmp_path / "front.log"
    engine_log.write_text("Service initialized (yesterday's run)\n")  # an earlier run's line must not count
    section = {
        "deploy": [{"name": "engine", "kind": "spawn", "log": str(engine_log),
                    "command": [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]},
                   {"name": "front", "kind": "spawn", "log": str(front_log),  # one that ignores SIGTERM
                    "command": ["sh", "-c", "trap '' TERM; echo front up; exec sleep 300"]}],
        "ready": {"kind": "http", "url": "http://127.0.0.1:%d/" % port, "until": ["status == 200"], "timeout": 10,
                  "interval": 0.1},
        "logs": {"kind": "command", "command": ["cat", str(engine_log)], "lines": ["Service initialized"],
                 "timeout": 1, "interval": 0.2}}
    done, report, results = deploy(tmp_path, section)
    assert done.returncode == 1 and results["logs"]["status"] == "fail"  # yesterday's line is gone
    assert "Service initialized" not in engine_log.read_text()
    assert results["stop deploy.engine"]["status"] == "pass"
    assert results["stop deploy.engine"]["message"].startswith("stopped by SIGTERM in ")
    assert results["stop deploy.front"]["status"] == "warn"
    assert results["stop deploy.front"]["message"] == "did not stop on SIGTERM within 5s: killed (SIGKILL)"
    assert list(results).index("stop deploy.front") < list(results).index("stop deploy.engine")  # newest first


def test_a_daemon_the_deploy_phase_starts_is_left_for_inspection_and_stopped_by_cleanup(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    daemon = ("import os, sys, time\nif os.fork():\n    sys.exit(0)\nos.setsid()\nif os.fork():\n    os._exit(0)\n"
              "open(sys.argv[1], 'w').write(str(os.getpid()))\nnull = os.open(os.devnull, os.O_RDWR)\n"
              "for fd in (0, 1, 2):\n    os.dup2(null, fd)\ntime.sleep(120)\n")
    section = {"deploy": {"kind": "command", "command": [sys.executable, "-c", daemon, str(pidfile)]},
               "ready": {"kind": "command", "command": ["false"]},
               "cleanup": {"kind": "command", "command": ["sh", "-c", 'kill "$(cat %s)"' % pidfile]}}
    try:
        for flags, stays in ((["--keep-on-failure"], True), ([], False)):
            done, _, results = deploy(tmp_path, section, "--state-dir", str(tmp_path / "s"), *flags)
            pid = int(pidfile.read_text())
            time.sleep(1)  # smoke.py has ended, and its reaper with it
            assert done.returncode == 1 and gone(pid) != stays, results["cleanup"]["message"]
            if stays:  # the system's, as the deploy phase left it: the user's cleanup stops it
                os.kill(pid, signal.SIGKILL)
    finally:
        if pidfile.exists() and not gone(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_targets_fetched_from_a_url_are_joined_to_credentials_kept_in_the_config(platform, tmp_path):
    """The seed's planes come from a URL; each plane's account is in the config, keyed by name."""
    import functools
    import http.server

    served = tmp_path / "www"
    served.mkdir()
    (served / "planes.json").write_text(json.dumps([{"name": "us", "vars": {"fail": []}},
                                                    {"name": "eu", "vars": {"fail": []}}]))
    server, base = serving(functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served)))
    try:
        url = base + "/planes.json"
        section = lifecycle(platform, targets=url)
        section["deploy"]["json"]["fail"] = "{fail}"
        section["credentials"] = {"us": {".trussrc": "api_key = k-us-12345\n"},
                                  "eu": {".trussrc": "api_key = k-eu-67890\n"}, "gone": {".trussrc": "x"}}
        section["logs"] = {"kind": "command", "command": ["sh", "-c", "cat $HOME/.trussrc > %s/{target}.seen"
                                                          % tmp_path]}
        done, report, results = deploy(tmp_path, section)
        assert done.returncode == 0, [(n, r["message"]) for n, r in results.items()]
        assert (tmp_path / "us.seen").read_text() == "api_key = k-us-12345\n"
        assert (tmp_path / "eu.seen").read_text() == "api_key = k-eu-67890\n"
        assert "k-us-12345" not in done.stdout + done.stderr  # secrets, as a target's own are
        del section["credentials"]["eu"]  # a plane with no account: exit 2 before anything is deployed
        section["credentials"]["eu1"] = {".trussrc": "x"}
        done, _, _ = deploy(tmp_path, section)
        assert done.returncode == 2 and "no credentials for target 'eu' (did you mean 'eu1'?)" in done.stderr
        assert state(platform)["models"] == {}
    finally:
        server.shutdown()
        server.server_close()


def test_a_targets_url_is_fetched_within_the_deadline_and_read_strictly(platform, tmp_path):
    """An inventory that never answers costs what is left of --deadline, and is exit 3 (nothing
    could be judged); one whose answer gives a key twice is exit 2, as the same file would be."""
    import http.server

    class Inventory(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/hang":
                time.sleep(20)
                return
            if self.path == "/moved":  # to what another user serves: never followed
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/planted.json")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'[{"name": "a", "name": "b", "vars": {"fail": []}}]'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server, base = serving(Inventory)
    try:
        started = time.monotonic()
        done, _, _ = deploy(tmp_path, lifecycle(platform, targets=base + "/hang"), "--deadline", "2")
        assert done.returncode == 3 and "cannot fetch the targets" in done.stderr, done.stderr
        assert time.monotonic() - started < 6
        done, _, _ = deploy(tmp_path, lifecycle(platform, targets=base + "/twice"), "--validate")
        assert done.returncode == 2 and "'name' is given twice" in done.stderr, done.stderr
        done, _, _ = deploy(tmp_path, lifecycle(platform, targets=base + "/moved"), "--validate")
        assert done.returncode == 3 and "answered 302, to http://127.0.0.1:9/planted.json: a targets URL is never " \
            "followed elsewhere" in done.stderr, done.stderr
        done, _, _ = deploy(tmp_path, lifecycle(platform, targets="http://192.0.2.7/planes.json"), "--validate")
        assert done.returncode == 2 and "is plain http to another host" in done.stderr, done.stderr
        if os.geteuid() == 0:  # a port of this host another user listens on (the inventory down, theirs up)
            theirs = subprocess.Popen(["/usr/bin/python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/",
                                      preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)))
            try:
                port = int(theirs.stdout.readline().split(" port ")[1].split()[0])
                done, _, _ = deploy(tmp_path, lifecycle(platform, targets="http://127.0.0.1:%d/t.json" % port),
                                    "--validate")
                assert done.returncode == 2 and "may be answered by user 65534's listener" in done.stderr, done.stderr
            finally:
                theirs.kill()
                theirs.wait()
    finally:
        server.shutdown()
        server.server_close()
    assert state(platform)["models"] == {}


def test_a_captured_value_stays_one_segment_of_a_url_and_never_an_option(tmp_path):
    """The platform chooses the ids it answers: m1/../../admin/wipe?all=1# in the cleanup's
    /models/{model_id} is one percent-encoded segment, and -rf as a whole argument of a command
    is refused; a {status_url} that is all of a URL is followed as the URL it is."""
    import http.server

    asked = []

    class Platform(http.server.BaseHTTPRequestHandler):
        def answer(self):
            asked.append((self.command, self.path))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            send_json(self, {"id": self.server.next_id, "status_url": self.server.status_url})

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, *args):
            pass

    server, base = serving(Platform)
    section = {"deploy": {"kind": "http", "method": "POST", "url": base + "/models", "json": {},
                          "capture": {"model_id": "json.id", "status_url": "json.status_url"}},
               "ready": {"kind": "http", "url": "{status_url}"},
               "predict": {"kind": "http", "url": base + "/models/{model_id}/predict?as={model_id}"},
               "cleanup": {"kind": "http", "method": "DELETE", "url": base + "/models/{model_id}"}}
    server.status_url = base + "/status"
    try:
        server.next_id = "m1/../../admin/wipe?all=1#"
        done, _, results = deploy(tmp_path, section)
        assert done.returncode == 0, (done.stderr, results)
        segment = "m1%2F..%2F..%2Fadmin%2Fwipe%3Fall%3D1%23"
        assert asked == [("POST", "/models"), ("GET", "/status"),
                         ("GET", "/models/%s/predict?as=%s" % (segment, segment)), ("DELETE", "/models/" + segment)]
        del asked[:]
        server.next_id = ".."
        assert deploy(tmp_path, section)[0].returncode == 0 and asked[-1] == ("DELETE", "/models/%2E%2E")
        section["ready"]["bearer_token"] = "s3cret-token"  # a token goes where the config's URLs point, only
        assert deploy(tmp_path, section)[0].returncode == 0
        server.status_url = base.replace("127.0.0.1", "localhost") + "/status"
        done, _, results = deploy(tmp_path, section)
        assert done.returncode == 3 and "the server named http://localhost:%d for this step, where none of the " \
            "config's URLs point: its credentials are not sent there" % server.server_address[1] in \
            results["ready"]["message"], results["ready"]
        del section["ready"]["bearer_token"]
        section["ready"]["headers"] = {"X-Auth-Key": "k-1", "Accept": "application/json"}  # named like no secret
        done, _, results = deploy(tmp_path, section)
        assert done.returncode == 3 and "its credentials are not sent there" in results["ready"]["message"]
        section["ready"]["headers"] = {"Accept": "application/json"}  # says how to talk, not who: it may go
        assert deploy(tmp_path, section)[0].returncode == 0
        server.status_url = base + "/status"
        del section["ready"]["headers"]
        server.next_id = "-rf"
        section["cleanup"] = {"kind": "command", "command": ["echo", "{model_id}"]}
        done, _, results = deploy(tmp_path, section)
        assert done.returncode == 3 and results["cleanup"]["status"] == "error", results
        assert "{model_id} is '-rf', which the command would read as an option" in results["cleanup"]["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_captured_value_is_never_code_a_word_list_a_glob_or_an_option_in_a_shell(tmp_path):
    """What a platform answers goes into a command only as plain text: a value with a space, a
    glob, $(...), quotes or brackets is the step's error wherever it would go (a shell: true
    command, the script of sh -c or of env sh -c, python -c, bash arithmetic), nothing run; a
    plain one is one quoted word; a query is percent-encoded; and a value never makes an
    argument begin with '-' ({opt}.txt, kill -9 {pid} with -1, {empty}{opt})."""
    import http.server

    victim, models = tmp_path / "victim", tmp_path / "models"
    for directory in (victim, models / "a", models / "b"):
        directory.mkdir(parents=True)
    answer = {"id": "m1 %s" % victim, "star": "*", "rid": "r1$(touch %s/PWNED)`touch %s/PWNED2`" % (tmp_path, tmp_path),
              "q": "a&b=1#c", "opt": "-o%s/PWNED3" % tmp_path, "pid": "-1", "plain": "model-7.2", "empty": "",
              "sub": "a[$(touch %s/PWNED4)]" % tmp_path, "up": "../victim"}
    asked = []

    class Platform(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            send_json(self, answer)

        def log_message(self, *args):
            pass

    server, base = serving(Platform)
    out = tmp_path / "said.txt"
    section = {"deploy": {"kind": "http", "url": base + "/new",
                          "capture": {key: "json." + key for key in answer}},
               "predict": [{"kind": "http", "url": base + "?model={q}"},
                           {"kind": "command", "command": ["sh", "-c", "echo status {plain} > %s" % out]}],
               "cleanup": {"kind": "command", "command": ["true"]}}
    try:
        done, _, results = deploy(tmp_path, section)
        assert done.returncode == 0, (done.stderr, results)
        assert asked == ["/new", "/?model=a%26b%3D1%23c"] and out.read_text() == "status model-7.2\n"
        for command, words in (("rm -rf %s/{id}" % models, "a captured value goes into a command only as plain"),
                               ("rm -rf %s/{star}" % models, "only as plain"),
                               (["sh", "-c", "out=\"$(echo {rid})\"; echo \"$out\""], "only as plain"),
                               (["env", "sh", "-c", "echo {rid}"], "only as plain"),
                               (["bash", "-c", "echo $(( {sub} + 1 ))"], "only as plain"),
                               (["python3", "-c", "print('{rid}')"], "only as plain"),
                               (["rm", "-rf", "%s/{up}" % models], "no .. segment"),
                               (["sort", "{opt}.txt"], "read as an option"), (["kill", "-9", "{pid}"], "read as an option"),
                               (["printf", "%s", "{empty}{opt}"], "read as an option"),
                               ("ls \"{opt}\"", "read as an option"), ("ls {empty}{opt}", "read as an option")):
            section["cleanup"] = {"kind": "command", "command": command, "shell": isinstance(command, str)}
            done, _, results = deploy(tmp_path, section)
            assert done.returncode == 3 and words in results["cleanup"]["message"], (command, results["cleanup"])
        assert victim.exists() and (models / "a").exists() and (models / "b").exists()
        assert not [name for name in os.listdir(str(tmp_path)) if name.startswith("PWNED")]
    finally:
        server.shutdown()
        server.server_close()


def test_an_apostrophe_inside_double_quotes_opens_no_single_quote(tmp_path, platform):
    for script, code in (('echo "can\'t find {name}"', 0), ("echo '{name}'", 2), ('echo "it\'s" \'{name}\'', 2)):
        section = lifecycle(platform)
        section["predict"] = {"kind": "command", "command": ["sh", "-c", script]}
        done, _, _ = deploy(tmp_path, section, "--validate")
        assert done.returncode == code, (script, done.stderr)
