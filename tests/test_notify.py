"""Notifications against real local receivers: a webhook, GitHub's issues API stand-in, pings."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT
from fixtures.receiver import serve

SMOKE = str(ROOT / "smoke.py")


@pytest.fixture
def receiver():
    server, url = serve()
    yield server, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def port(listening_port):
    return listening_port


def smoke(tmp_path, target, *args, env=None):
    done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", target, "--name", "db", "--state-dir",
                           str(tmp_path / "state")] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **(env or {})))
    return done, json.loads(done.stdout) if done.stdout.startswith("{") else None


def test_one_message_per_transition_and_one_escalation_after_three_failures(receiver, port, tmp_path):
    server, url = receiver
    up, down = "127.0.0.1:%d" % port, "127.0.0.1:1"
    for target in (up, up, down, down, down, down, up, up):
        smoke(tmp_path, target, "--notify", url + "/hook")
    texts = [json.loads(body)["text"] for _, _, _, body in server.requests]
    assert len(texts) == 3, texts
    assert "FAILED - 1 of 1 failed: db" in texts[0]
    assert "ESCALATED - db has failed 3 runs in a row" in texts[1]
    assert "RECOVERED - all 1 passed again" in texts[2]
    fields = json.loads(server.requests[0][3])["attachments"][0]["fields"]
    assert {"title": "fail", "value": "1", "short": True} in fields


def test_the_json_format_posts_the_summary_and_a_failed_post_never_changes_the_verdict(receiver, port, tmp_path):
    server, url = receiver
    done, report = smoke(tmp_path, "127.0.0.1:1", "--notify", url + "/hook", "--notify-format", "json")
    body = json.loads(server.requests[0][3])
    assert body["event"] == "failed" and body["summary"]["fail"] == 1 and body["status"] == "fail"
    server.fail_next = 10  # every try answers 503: retried, then given up
    done, report = smoke(tmp_path, "127.0.0.1:%d" % port, "--notify", url + "/secret-hook-token")
    assert done.returncode == 0 and report["status"] == "pass"
    assert len(server.requests) == 1 + 3  # the first try and two retries
    # the webhook's path is its credential, masked; its host is said, so one knows which receiver failed
    assert report["problems"] == ["--notify: %s/***: status 503" % url]


def test_github_issue_is_opened_commented_and_closed(receiver, port, tmp_path):
    server, url = receiver
    flags = ["--notify-github", "acme/shop", "--github-api", url]
    env = {"GITHUB_TOKEN": "ghp_s3cretvalue123"}
    for target in ("127.0.0.1:1", "127.0.0.1:1"):
        done, report = smoke(tmp_path, target, *flags, env=env)
        assert "problems" not in report, report.get("problems")
    assert list(server.issues) == [1]
    issue = server.issues[1]
    assert issue["title"] == "smoke: db fails (health)" and issue["labels"] == ["smoke-failure"]  # no host name
    assert issue["state"] == "open" and len(issue["comments"]) == 1 and "Still failing" in issue["comments"][0]
    done, report = smoke(tmp_path, "127.0.0.1:%d" % port, *flags, env=env)
    assert issue["state"] == "closed" and issue["comments"][-1].startswith("Recovered at")
    assert all(h["Authorization"] == "Bearer ghp_s3cretvalue123" for _, _, h, _ in server.requests)
    done, report = smoke(tmp_path, "127.0.0.1:1", *flags, env=env)
    assert list(server.issues) == [1, 2]  # broken again: a new issue, the closed one stays closed
    done, _ = smoke(tmp_path, "127.0.0.1:1", *flags, env={"GITHUB_TOKEN": ""})
    assert done.returncode == 2 and "set GITHUB_TOKEN" in done.stderr


def test_ping_start_then_success_or_fail(receiver, port, tmp_path):
    server, url = receiver
    smoke(tmp_path, "127.0.0.1:%d" % port, "--ping", url + "/ping/abc")
    smoke(tmp_path, "127.0.0.1:1", "--ping", url + "/ping/abc")
    assert [(m, p) for m, p, _, _ in server.requests] == [
        ("POST", "/ping/abc/start"), ("POST", "/ping/abc"), ("POST", "/ping/abc/start"), ("POST", "/ping/abc/fail")]
    assert "1 of 1 passed" in server.requests[1][3] and "fail, 0 of 1 passed" in server.requests[3][3]


def test_bad_notification_flags_are_exit_2(tmp_path):
    for flags, said in ((["--notify", "ftp://x"], "--notify"), (["--ping", "not a url"], "--ping"),
                        (["--notify-github", "no-slash"], "expected OWNER/REPO"), (["--escalate-after", "0"],
                                                                                  "--escalate-after")):
        done, _ = smoke(tmp_path, "127.0.0.1:1", *flags)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_garbled_github_answer_is_a_problem_and_the_report_is_kept(receiver, tmp_path):
    server, url = receiver
    host = socket.gethostname()
    server.issues[1] = {"title": "smoke: db fails on %s (health)" % host, "state": "open", "labels": ["smoke-failure"],
                        "body": "", "comments": []}
    import fixtures.receiver as fake
    original = fake.Handler.github

    def garbled(self, body):  # the issue's number as text, as a broken proxy might send it
        if self.command == "GET":  # and a pull request with the title: GitHub lists those as issues too
            return self.answer(200, [{"title": server.issues[1]["title"], "number": "1"},
                                     {"title": server.issues[1]["title"], "number": 1, "pull_request": {}}])
        return original(self, body)
    fake.Handler.github = garbled
    try:
        done, report = smoke(tmp_path, "127.0.0.1:1", "--notify-github", "acme/shop", "--github-api", url,
                             "--format", "json", env={"GITHUB_TOKEN": "ghp_x1234567"})
    finally:
        fake.Handler.github = original
    assert done.returncode == 1 and report["status"] == "fail"  # the report is kept, the verdict the system's
    assert list(server.issues) == [1, 2]  # what is not an issue (its number text) is passed over: one is opened


# --- delivery is bounded by the run and by signals; an issue is known by what it is about ----

def github_run(tmp_path, url, *args, target="127.0.0.1:1", env=None):
    return smoke(tmp_path, target, "--notify-github", "acme/shop", "--github-api", url, *args,
                 env=dict({"GITHUB_TOKEN": "ghp_s3cretvalue123"}, **(env or {})))


def test_a_receiver_that_never_answers_costs_the_run_no_more_than_its_deadline(receiver, tmp_path):
    import time
    server, url = receiver
    server.hang = True
    for flags in (["--ping", url + "/ping/abc"], ["--notify", url + "/hook"], ["--push", url],
                  ["--notify-github", "acme/shop", "--github-api", url]):
        started = time.monotonic()
        done, report = smoke(tmp_path / str(len(server.requests)), "127.0.0.1:1", "--deadline", "2", *flags,
                             env={"GITHUB_TOKEN": "ghp_x1234567"})
        took = time.monotonic() - started
        assert done.returncode == 1 and took < 4, (flags, took)  # 2 s, and the interpreter's start and end
        assert report["duration_ms"] >= 1500, report["duration_ms"]  # the report's duration covers delivery
        assert report["problems"], flags


def test_a_signal_during_delivery_ends_it_at_once_with_the_report_and_its_code(receiver, tmp_path):
    import signal
    import time
    server, url = receiver
    server.hang = True
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--state-dir",
                             str(tmp_path / "state"), "--notify", url + "/hook"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:  # the webhook is being told
        time.sleep(0.02)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 143 and time.monotonic() - started < 1.5
    report = json.loads(out)
    assert report["interrupted"] == "SIGTERM" and "--notify: cut short: interrupted" in report["problems"][-1]


def test_a_hung_github_costs_one_budget_for_all_failing_checks(receiver, tmp_path):
    import time
    server, url = receiver
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"health": {"checks": [{"name": "c%d" % i, "kind": "tcp", "address": "127.0.0.1:1"}
                                                      for i in range(100)]}}))
    server.hang = "POST"  # the issues are listed; opening one never answers
    started = time.monotonic()
    done = subprocess.run([sys.executable, SMOKE, "health", "--config", str(path), "--state-dir", str(tmp_path / "s"),
                           "--deadline", "3", "--notify-github", "acme/shop", "--github-api", url],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, GITHUB_TOKEN="ghp_x1234567"))
    assert done.returncode == 1 and time.monotonic() - started < 5
    assert "the delivery budget ran out" in done.stderr


def test_open_issues_are_found_across_pages_so_none_is_opened_twice(receiver, tmp_path):
    server, url = receiver
    server.per_page = 30
    for number in range(1, 102):  # 101 open issues of other checks first, as a long-lived repository has
        server.issues[number] = {"title": "other %d" % number, "body": "", "labels": ["smoke-failure"],
                                 "state": "open", "comments": []}
    for _ in range(2):
        done, report = github_run(tmp_path, url)
        assert "problems" not in report, report.get("problems")
    assert len(server.issues) == 102 and len(server.issues[102]["comments"]) == 1  # opened once, then commented
    pages = [p for m, p, _, _ in server.requests if m == "GET"]
    assert len(pages) == 2 * 4 and "page=4" in pages[3]


def test_a_next_page_on_another_host_is_not_followed_with_the_token(receiver, tmp_path):
    server, url = receiver
    other, other_url = serve()
    try:
        server.per_page, server.next_base = 1, other_url
        for number in (1, 2):
            server.issues[number] = {"title": "other", "body": "", "labels": ["smoke-failure"], "state": "open",
                                     "comments": []}
        done, report = github_run(tmp_path, url)
        assert other.requests == [] and "the next page is not on" in report["problems"][0]
    finally:
        other.shutdown()
        other.server_close()


def test_an_issue_is_known_by_check_selection_and_instance_never_by_host(receiver, tmp_path):
    server, url = receiver
    github_run(tmp_path, url)
    github_run(tmp_path, url, "--instance", "web-1")
    github_run(tmp_path, url, "--instance", "web-1")
    github_run(tmp_path, url, "--skip-tag", "slow")  # another selection: its own streak, its own issue
    titles = {issue["title"]: issue for issue in server.issues.values()}
    assert set(titles) == {"smoke: db fails (health)", "smoke: db fails (health) on web-1",
                           "smoke: db fails (health -slow)"}
    assert len(titles["smoke: db fails (health) on web-1"]["comments"]) == 1
    body = titles["smoke: db fails (health)"]["body"]
    assert '<!-- smoke.py issue: {"check": "db", "command": "health", "instance": "", "selection": ""} -->' in body
    titles["smoke: db fails (health)"]["title"] = "renamed by a person"  # the mark, not the title, is the key
    github_run(tmp_path, url)
    assert len(server.issues) == 3


def test_an_issue_opened_before_the_mark_is_still_found(receiver, tmp_path):
    server, url = receiver
    server.issues[1] = {"title": "smoke: db fails on %s (health)" % socket.gethostname(), "body": "",
                        "labels": ["smoke-failure"], "state": "open", "comments": []}
    github_run(tmp_path, url)
    assert list(server.issues) == [1] and len(server.issues[1]["comments"]) == 1


CI_VARIABLES = ("GITHUB_RUN_ID", "GITHUB_REPOSITORY", "GITHUB_SERVER_URL", "SYSTEM_COLLECTIONURI", "BUILD_BUILDID",
                "CI_JOB_URL", "BUILD_URL", "CIRCLE_BUILD_URL", "BUILDKITE_BUILD_URL", "TRAVIS_BUILD_WEB_URL",
                "DRONE_BUILD_LINK")


def outside_ci(**extra):
    env = {key: value for key, value in os.environ.items() if key not in CI_VARIABLES}
    env.update(extra)
    return env


def bare_smoke(tmp_path, args, env):
    done = subprocess.run([sys.executable, SMOKE, "health", "--state-dir", str(tmp_path / "state")] + args,
                          capture_output=True, text=True, timeout=60, env=env)
    return done, json.loads(done.stdout) if done.stdout.startswith("{") else None


def test_a_failed_message_says_what_failed_and_why_and_links_the_run(receiver, port, tmp_path):
    server, url = receiver
    checks = ["--tcp", "127.0.0.1:1", "--tcp", "127.0.0.1:%d" % port, "--url", "http://127.0.0.1:1/health"]
    run = "https://ci.example/acme/shop/runs/77"
    bare_smoke(tmp_path, checks + ["--notify", url + "/hook", "--run-url", run, "--ping", url + "/ping/abc"],
               outside_ci())
    failed = [json.loads(body)["text"] for _, path, _, body in server.requests if path == "/hook"][0]
    assert "FAILED - 2 of 3 failed: tcp 127.0.0.1:1 (" in failed and "; http GET http://127.0.0.1:1/health (" in failed
    assert "refused" in failed.lower() and failed.endswith(" - " + run), failed
    pinged = [body for _, path, _, body in server.requests if path == "/ping/abc/fail"]
    assert len(pinged) == 1 and pinged[0].endswith("\n" + run)  # the channels go side by side: any order
    server.requests.clear()  # from a CI: its own page, from its variables
    github = outside_ci(GITHUB_SERVER_URL="https://github.example", GITHUB_REPOSITORY="acme/shop",
                        GITHUB_RUN_ID="4242", GITHUB_TOKEN="ghp_s3cretvalue123")
    bare_smoke(tmp_path / "2", checks + ["--notify", url + "/hook", "--notify-format", "json", "--notify-github",
                                         "acme/shop", "--github-api", url], github)
    posted = [json.loads(body) for method, path, _, body in server.requests if path == "/hook"]
    assert posted[0]["run_url"] == "https://github.example/acme/shop/actions/runs/4242", posted
    bodies = [issue["body"] for issue in server.issues.values()]
    assert len(bodies) == 2 and all("The run: https://github.example/acme/shop/actions/runs/4242" in b
                                    for b in bodies), bodies
    server.requests.clear()  # outside a CI and without --run-url: no link, and nothing in its place
    bare_smoke(tmp_path / "3", checks + ["--notify", url + "/hook"], outside_ci())
    assert " - http" not in json.loads(server.requests[0][3])["text"].split("failed: ", 1)[0]
    assert not json.loads(server.requests[0][3])["text"].endswith(run)


def test_a_bad_run_url_is_exit_2_and_an_odd_ci_variable_is_no_link(receiver, tmp_path):
    server, url = receiver
    done, _ = bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1", "--notify", url + "/hook", "--run-url", "ftp://x"],
                         outside_ci())
    assert done.returncode == 2 and "--run-url" in done.stderr and not server.requests, done.stderr
    done, report = bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1", "--notify", url + "/hook"],
                              outside_ci(BUILD_URL="not a url at all"))
    assert done.returncode == 1 and "problems" not in report
    assert json.loads(server.requests[0][3])["text"].endswith(")"), server.requests[0][3]


def test_one_hung_receiver_does_not_starve_the_others(receiver, tmp_path):
    import time
    hung, hung_url = receiver
    hung.hang = True
    healthy, healthy_url = serve()
    try:
        started = time.monotonic()
        done, report = bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1", "--deadline", "3", "--notify", hung_url + "/hook",
                                             "--ping", healthy_url + "/ping/abc", "--push", healthy_url],
                                  outside_ci())
        took = time.monotonic() - started
        told = [(method, path) for method, path, _, _ in healthy.requests]
    finally:
        healthy.shutdown()
        healthy.server_close()
    assert done.returncode == 1 and took < 5, took
    assert ("POST", "/ping/abc/fail") in told and any(m == "PUT" and "/metrics/job/smoke" in p for m, p in told), told
    assert len(report["problems"]) == 1 and report["problems"][0].startswith("--notify: "), report["problems"]


def test_a_run_stopped_by_a_signal_tells_nobody_and_is_passed_over(receiver, port, tmp_path):
    import signal
    import time
    server, url = receiver
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"health": {"checks": [{"name": "slow", "kind": "command",
                                                       "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                                                       "timeout": 60}]}}))
    tell = ["--state-dir", str(tmp_path / "state"), "--notify", url + "/hook"]
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:%d" % port] + tell[2:], outside_ci())  # a pass: nothing to tell
    for signum in (signal.SIGTERM, signal.SIGHUP):  # systemctl stop, a closed terminal: no verdict to tell
        proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", str(slow), "--notify-github",
                                 "acme/shop", "--github-api", url] + tell, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=outside_ci(GITHUB_TOKEN="ghp_s3cretvalue123"))
        time.sleep(1.5)
        proc.send_signal(signum)
        proc.communicate(timeout=30)
        assert proc.returncode in (143, 129)
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:%d" % port] + tell[2:], outside_ci())  # no RECOVERED from nothing
    assert server.requests == [] and server.issues == {}, [r[:2] for r in server.requests]
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1"] + tell[2:], outside_ci())  # a real failure still is
    assert [json.loads(r[3])["text"].split(" - ")[0][-6:] for r in server.requests] == ["FAILED"]


def test_a_message_that_was_not_delivered_is_told_by_the_next_run(receiver, port, tmp_path):
    server, url = receiver
    tell = ["--state-dir", str(tmp_path / "state"), "--notify", url + "/hook", "--escalate-after", "2"]
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:%d" % port] + tell, outside_ci())  # a pass
    server.fail_next = 10  # the failure's message: every try answers 503
    done, report = bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1"] + tell, outside_ci())
    assert done.returncode == 1 and report["problems"][0].endswith("status 503")
    server.requests.clear()
    server.fail_next = 0
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1"] + tell, outside_ci())  # still failing: told now, and escalated
    texts = [json.loads(body)["text"] for _, _, _, body in server.requests]
    assert len(texts) == 2 and "FAILED - 1 of 1 failed" in texts[0] and "has failed 2 runs in a row" in texts[1]
    server.requests.clear()
    bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1"] + tell, outside_ci())  # told once: nothing new
    assert server.requests == []


def test_a_stopped_run_tells_within_seconds_not_the_whole_delivery_budget(receiver, tmp_path):
    """After SIGTERM the run still pushes its interrupted report, but whoever stopped it waits
    five seconds at most for a receiver that never answers, not the 30 s a run may take."""
    import signal
    import time
    server, url = receiver
    server.hang = "PUT"
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"health": {"checks": [{"name": "slow", "kind": "command", "timeout": 60,
                                                       "command": [sys.executable, "-c", "import time; time.sleep(30)"]}]}}))
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", str(slow), "--state-dir",
                             str(tmp_path / "state"), "--push", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=outside_ci())
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - started
    assert proc.returncode == 143 and 4 < took < 8, took
    assert json.loads(out)["interrupted"] == "SIGTERM" and any(m == "PUT" for m, _, _, _ in server.requests)


def test_a_webhook_url_written_percent_encoded_is_masked_when_a_receiver_says_it_back_decoded(tmp_path):
    """--notify http://host/%53ECRET%41A: a receiver that answers with the path decoded
    (SECRETAA) in a garbled status line has it masked in the problems like the raw form."""
    import threading
    import urllib.parse
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        for _ in range(3):  # the first try and two retries
            try:
                conn, _ = server.accept()
            except OSError:
                return
            line = conn.recv(4096).split(b" ")[1]
            conn.sendall(b"GARBAGE " + urllib.parse.unquote_to_bytes(line) + b"\r\n\r\n")
            conn.close()
    threading.Thread(target=answer, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/%%53ECRET%%41A" % server.getsockname()[1]
        done, report = bare_smoke(tmp_path, ["--tcp", "127.0.0.1:1", "--notify", url], outside_ci())
    finally:
        server.close()
    text = json.dumps(report) + done.stderr
    assert report["problems"] and "SECRETAA" not in text and "%53ECRET" not in text, report["problems"]
