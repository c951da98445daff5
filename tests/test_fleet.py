"""A fleet on real engines: ansible-core's real ansible-playbook runs examples/ansible/ on an inventory
of three hosts (local connection, each with its own state directory and config) and fetches their
reports, which `smoke.py summary` reads; the Pushgateway from Debian keeps a group per --instance."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, free_port
from fixtures.service import serve_in_thread

SMOKE = str(ROOT / "smoke.py")
PLAYBOOKS = ROOT / "examples" / "ansible"
ANSIBLE = shutil.which("ansible-playbook")
needs_ansible = pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed (pip install "
                                                           "ansible-core; .ci/run does): the playbooks are not run")
HOSTS = ("web-1", "web-2", "web-3")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The single file, as `make bundle` writes it (here, not in the checkout's dist/)."""
    path = tmp_path_factory.mktemp("dist") / "smoke.py"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--output", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return path


def playbook(tmp_path, name, hosts, bundle, *extra):
    """ansible-playbook NAME on an inventory of hosts ({name: its variables}), every one of them
    this machine (local connection); the process."""
    lines = ["[fleet]"] + [" ".join([host] + ["%s=%s" % item for item in sorted(values.items())])
                           for host, values in hosts.items()]
    lines += ["[fleet:vars]", "ansible_connection=local", "ansible_python_interpreter=%s" % sys.executable]
    (tmp_path / "inventory.ini").write_text("\n".join(lines) + "\n")
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / ".ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-tmp"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / ".ansible-tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_FORKS="10")
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run([ANSIBLE, "-i", str(tmp_path / "inventory.ini"), str(PLAYBOOKS / name),
                           "-e", "smoke_bundle=%s" % bundle, "-e", "smoke_python=%s" % sys.executable,
                           "-e", "smoke_fetched=%s" % (tmp_path / "fetched")] + list(extra),
                          capture_output=True, text=True, timeout=180, cwd=str(tmp_path), env=env)


def summary(*args):
    done = subprocess.run([sys.executable, SMOKE, "summary"] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60)
    return done, json.loads(done.stdout) if "--format" in args else None


@needs_ansible
def test_the_playbook_checks_three_hosts_and_the_summary_shows_the_one_whose_service_is_down(bundle, tmp_path):
    servers = [serve_in_thread() for _ in HOSTS]
    servers[2][0].shutdown()  # web-3's service goes down
    servers[2][0].server_close()
    hosts = {}
    for host, (_, url) in zip(HOSTS, servers):
        config = tmp_path / ("%s.json" % host)
        config.write_text(json.dumps({"health": {"checks": [
            {"name": "api", "kind": "http", "url": url + "/health", "expect": ["status == 200"]},
            {"name": "port", "kind": "tcp", "address": url.split("//")[1]}]}}))
        hosts[host] = {"smoke_config": config, "smoke_dir": tmp_path / "hosts" / host}
    try:
        began = time.monotonic()
        done = playbook(tmp_path, "smoke.yml", hosts, bundle)
        took = time.monotonic() - began
    finally:
        for server, _ in servers[:2]:
            server.shutdown()
            server.server_close()
    # the hosts' plays passed; the last play failed on the fleet's verdict (ansible-playbook's exit 2)
    assert done.returncode == 2 and "smoke.py summary: exit 1: smoke.py summary: 3 hosts (1 fail, 2 pass)" \
        in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert '"web-3  FAIL' in done.stdout and took < 60, took
    for host in HOSTS:  # each ran on its own, with its own config and history, and came back
        report = json.loads((tmp_path / "fetched" / host / "report.json").read_text())
        assert report["instance"] == host and report["command"] == "all"
        assert (tmp_path / "hosts" / host / "history.jsonl").exists()
        assert oct((tmp_path / "hosts" / host).stat().st_mode & 0o777) == "0o700"
    done, view = summary(tmp_path / "fetched", "--format", "json")
    assert done.returncode == 1 and [(row["host"], row["status"]) for row in view["hosts"]] == [
        ("web-3", "fail"), ("web-1", "pass"), ("web-2", "pass")]
    assert view["hosts"][0]["failing"] == ["api", "port"]
    assert {row["name"]: row["fail"] for row in view["checks"]} == {"api": ["web-3"], "port": ["web-3"]}


@needs_ansible
def test_a_host_whose_run_made_no_report_is_named_by_the_summary(bundle, tmp_path):
    """A config the host's smoke.py refuses (exit 2): nothing ran, nothing to fetch; the host is still told."""
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"health": {"checks": [{"name": "self", "kind": "command", "command": ["true"]}]}}))
    bad.write_text(json.dumps({"health": {"checks": [{"name": "self", "kind": "commnd", "command": ["true"]}]}}))
    hosts = {host: {"smoke_config": bad if host == "web-2" else good, "smoke_dir": tmp_path / "hosts" / host}
             for host in HOSTS}
    done = playbook(tmp_path, "smoke.yml", hosts, bundle)
    assert done.returncode == 2 and "web-2" in done.stdout
    done, view = summary(tmp_path / "fetched", "--format", "json")
    assert done.returncode == 3 and view["hosts"][0]["host"] == "web-2" and view["hosts"][0]["status"] == "error"
    assert view["hosts"][0]["reports"][0]["problem"] == "no report (*.json) in it"


@needs_ansible
def test_the_perf_playbook_spreads_one_load_over_three_hosts_and_the_summary_merges_it(bundle, service, tmp_path):
    hosts = {host: {"smoke_dir": tmp_path / "hosts" / host} for host in HOSTS}
    done = playbook(tmp_path, "perf.yml", hosts, bundle, "-e", "smoke_url=%s/health" % service,
                    "-e", "smoke_duration=2", "-e", "smoke_connections=2",
                    "-e", json.dumps({"smoke_thresholds": ["rps > 100", "p99_ms < 1000", "error_rate < 0.01"]}))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "perf url on 3 hosts (web-1, web-2, web-3), under way together for" in done.stdout
    reports = [json.loads((tmp_path / "fetched" / host / "report.json").read_text()) for host in HOSTS]
    done, view = summary(tmp_path / "fetched", "--format", "json", "--threshold", "rps > 100")
    [merged] = view["loads"]
    shares = [report["results"][0]["facts"] for report in reports]
    assert done.returncode == 0 and merged["hosts"] == list(HOSTS) and merged["status"] == "pass"
    assert merged["facts"]["rps"] == round(sum(f["rps"] for f in shares), 1)
    assert merged["facts"]["count"] == sum(f["count"] for f in shares) and merged["facts"]["errors"] == 0
    assert merged["facts"]["percentiles_from"] == "samples"
    every = sorted(v for f in shares for v in f["samples_ms"])
    assert merged["facts"]["p50_ms"] == every[(len(every) + 1) // 2 - 1]  # nearest rank
    assert merged["facts"]["overlap_s"] > 0


def _metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/metrics" % port, timeout=5) as answer:
        groups = json.load(answer)["data"]
    return {group["labels"]["instance"]: group for group in groups if group["labels"].get("job") == "smoke"}


def _success(group):
    return {m["labels"]["check"]: m["value"] for m in group["smoke_check_success"]["metrics"]}


def test_the_pushgateway_keeps_a_group_per_instance_and_a_push_replaces_only_its_own(service, tmp_path):
    gateway = shutil.which("prometheus-pushgateway")
    if not gateway:
        pytest.skip("prometheus-pushgateway is not installed (apt install prometheus-pushgateway)")
    port = free_port()
    proc = subprocess.Popen([gateway, "--web.listen-address=127.0.0.1:%d" % port,
                             "--persistence.file=%s" % (tmp_path / "pg.data")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    closed = free_port()

    def push(host, address):
        return subprocess.run([sys.executable, SMOKE, "health", "--url", service + "/health", "--name", "api",
                               "--tcp", address, "--name", "db", "--push", "http://127.0.0.1:%d" % port,
                               "--instance", host, "--state-dir", str(tmp_path / host), "--quiet"],
                              capture_output=True, text=True, timeout=60)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _metrics(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the Pushgateway did not answer"
                time.sleep(0.1)
        up = service.split("//")[1]
        for host in HOSTS:
            done = push(host, up if host != "web-3" else "127.0.0.1:%d" % closed)
            assert done.returncode == (1 if host == "web-3" else 0) and done.stderr == "", done.stderr
        groups = _metrics(port)
        assert sorted(groups) == list(HOSTS)
        assert {host: _success(group) for host, group in groups.items()} == {
            "web-1": {"api": "1", "db": "1"}, "web-2": {"api": "1", "db": "1"}, "web-3": {"api": "1", "db": "0"}}
        for host, group in groups.items():  # each group's series carry its own instance, and only it
            for series in group["smoke_check_success"]["metrics"]:
                assert series["labels"]["instance"] == host and series["labels"]["job"] == "smoke"
        pushed = {host: group["push_time_seconds"]["metrics"][0]["value"] for host, group in groups.items()}
        time.sleep(0.05)
        assert push("web-2", "127.0.0.1:%d" % closed).returncode == 1  # web-2's db goes down
        after = _metrics(port)
        assert sorted(after) == list(HOSTS) and _success(after["web-2"]) == {"api": "1", "db": "0"}
        assert _success(after["web-1"]) == {"api": "1", "db": "1"} and _success(after["web-3"]) == {"api": "1",
                                                                                                 "db": "0"}
        assert {host: group["push_time_seconds"]["metrics"][0]["value"] for host, group in after.items()} == dict(
            pushed, **{"web-2": after["web-2"]["push_time_seconds"]["metrics"][0]["value"]})
        assert after["web-2"]["push_time_seconds"]["metrics"][0]["value"] != pushed["web-2"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_docs_fleet_md_shows_the_playbooks_as_they_are():
    doc = (ROOT / "docs" / "fleet.md").read_text()
    blocks = doc.split("```yaml\n")[1:]
    assert [block[:block.index("```\n")] for block in blocks] == [(PLAYBOOKS / name).read_text()
                                                                 for name in ("smoke.yml", "perf.yml")]
