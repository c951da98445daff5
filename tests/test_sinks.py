"""checks/sinks.py: every report file sink parsed back and compared with the JSON report, and read by
its real reader where Debian has one: promtool, node_exporter's textfile collector, the Pushgateway.
--output is written as what its path is: real FIFOs, symlinks, devices, sockets and descriptors."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from xml.etree import ElementTree

import pytest

from checks import sinks
from conftest import ROOT, config, free_port, report_of, smoke, strict_json, timed_run

SMOKE = str(ROOT / "smoke.py")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A config with a pass, a fail, an error, a warning and a skip; every file sink of one run."""
    tmp = tmp_path_factory.mktemp("sinks")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    (tmp / "smoke.json").write_text(json.dumps({"health": {"checks": [
        {"name": "up", "kind": "tcp", "address": "127.0.0.1:%d" % port},
        {"name": "down \"quoted\"\nline", "kind": "tcp", "address": "127.0.0.1:1"},
        {"name": "cannot", "kind": "command", "command": ["/nonexistent/probe"]},
        {"name": "slow", "kind": "tcp", "address": "127.0.0.1:1", "severity": "warning"},
        {"name": "later", "kind": "tcp", "address": "127.0.0.1:1", "tags": ["daily"]}]}}))
    files = {flag: tmp / name for flag, name in (("--output", "r.json"), ("--junit", "r.xml"),
                                                  ("--prom", "smoke.prom"), ("--tap", "r.tap"))}
    argv = [sys.executable, SMOKE, "health", "--config", str(tmp / "smoke.json"), "--skip-tag", "daily",
            "--state-dir", str(tmp / "state")]
    for flag, path in files.items():
        argv += [flag, str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    sock.close()
    return done, json.loads(files["--output"].read_text()), files, tmp


def test_junit_has_a_testcase_per_result_with_failures_errors_and_skips(mixed):
    done, report, files, _ = mixed
    root = ElementTree.parse(str(files["--junit"])).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "5"
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("health", "1",
                                                                                                      "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {r["name"] for r in report["results"]}
    failure = cases['down "quoted"\nline'].find("failure")
    assert failure.get("message") == "connection refused" and "connected: false" in failure.text
    assert cases["cannot"].find("error") is not None and cases["later"].find("skipped") is not None
    assert "warn" in cases["slow"].find("system-out").text and len(cases["up"]) == 0
    assert float(cases["up"].get("time")) >= 0


def test_the_prometheus_file_matches_the_report_and_promtool_accepts_it(mixed):
    done, report, files, _ = mixed
    text = files["--prom"].read_text()
    assert 'smoke_check_success{command="health",selection="-daily",section="health",check="up"} 1.0' in text
    assert 'check="down \\"quoted\\"\\nline"} 0.0' in text  # labels escaped
    assert 'check="slow"} 1.0' in text and 'check="later"' not in text  # a warning passes; a skip says nothing
    assert 'smoke_run_success{command="health",selection="-daily"} 0.0' in text  # a tier's series are its own
    stamp = float(re.search(r"smoke_run_timestamp_seconds\{[^}]*\} (\S+)", text).group(1))
    assert abs(stamp - time.time()) < 120
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt install prometheus)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_perf_latency_is_a_prometheus_summary_promtool_accepts(service, tmp_path):
    """Quantiles are a summary's label: a gauge with a quantile label is refused by promtool."""
    prom = tmp_path / "perf.prom"
    done = smoke("perf", "--url", service + "/health", "--requests", "50", "--connections", "2", "--prom", str(prom),
                 "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 0, done.stderr
    text = prom.read_text()
    report = json.loads(done.stdout)["metrics"]["perf"]["targets"]["url"]
    assert "# TYPE smoke_perf_latency_seconds summary\n" in text and 'quantile="0.95"} ' in text
    assert 'smoke_perf_latency_seconds_count{command="perf",target="url"} %r' % float(report["n"]) in text
    total = float(re.search(r'smoke_perf_latency_seconds_sum\{[^}]*\} (\S+)', text).group(1))
    assert abs(total - report["mean_ms"] * report["n"] / 1000) < 0.001
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt install prometheus)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tap_and_the_exit_code_agree_with_the_report(mixed):
    done, report, files, _ = mixed
    lines = files["--tap"].read_text().splitlines()
    assert lines[:2] == ["TAP version 13", "1..5"]
    verdicts = [line.split(" - ")[0].rsplit(" ", 1)[0] for line in lines if re.match(r"(not )?ok \d", line)]
    assert verdicts == ["ok", "not ok", "not ok", "ok", "ok"]
    assert any("# SKIP" in line for line in lines) and done.returncode == report["exit_code"] == 1


def test_node_exporter_serves_the_textfile(mixed):
    exporter = shutil.which("prometheus-node-exporter")
    if not exporter:
        pytest.skip("prometheus-node-exporter is not installed (apt install prometheus-node-exporter)")
    _, _, files, tmp = mixed
    port = free_port()
    proc = subprocess.Popen([exporter, "--web.listen-address=127.0.0.1:%d" % port, "--collector.disable-defaults",
                             "--collector.textfile", "--collector.textfile.directory=%s" % tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = _get("http://127.0.0.1:%d/metrics" % port)
        assert 'smoke_check_success{check="up",command="health",section="health",selection="-daily"} 1' in text
        assert "node_textfile_scrape_error 0" in text
    finally:
        proc.terminate()
        proc.wait(10)


def test_push_reaches_a_real_pushgateway(tmp_path):
    gateway = shutil.which("prometheus-pushgateway")
    if not gateway:
        pytest.skip("prometheus-pushgateway is not installed (apt install prometheus-pushgateway)")
    port = free_port()
    proc = subprocess.Popen([gateway, "--web.listen-address=127.0.0.1:%d" % port,
                             "--persistence.file=%s" % (tmp_path / "pg.data")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _get("http://127.0.0.1:%d/metrics" % port)
        done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--name", "db", "--push",
                               "http://127.0.0.1:%d" % port, "--state-dir", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
        assert "problems" not in json.loads(done.stdout), done.stdout
        text = _get("http://127.0.0.1:%d/metrics" % port)
        host = socket.gethostname()
        assert re.search(r'smoke_check_success\{check="db",command="health",instance="%s",job="smoke",'
                         r'section="health"\} 0' % re.escape(host), text), text[-2000:]
    finally:
        proc.terminate()
        proc.wait(10)
    done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--push", "http://127.0.0.1:1",
                           "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--push" in json.loads(done.stdout)["problems"][0]  # said, verdict unchanged


def test_a_sink_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    for flag in ("--junit", "--prom", "--tap"):
        done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", flag,
                               str(tmp_path / "missing" / "x")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and flag in done.stderr and "does not exist" in done.stderr


def _get(url):
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- --output: written as what the path is ---------------------------------------------------

def test_output_to_dev_null_writes_through_and_leaves_the_device(service):
    before = os.stat("/dev/null")
    done = smoke("health", "--url", service + "/health", "--output", "/dev/null")
    after = os.stat("/dev/null")
    assert done.returncode == 0 and stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_output_to_a_fifo_writes_through_and_a_fifo_without_reader_is_reported(service, tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(str(fifo))
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    time.sleep(0.2)
    done = smoke("health", "--url", service + "/health", "--output", str(fifo), "--quiet")
    assert done.returncode == 0 and json.loads(reader.communicate(timeout=10)[0])["status"] == "pass"
    assert stat.S_ISFIFO(os.stat(str(fifo)).st_mode)
    late = subprocess.Popen(["sh", "-c", 'sleep 1; exec cat "$0"', str(fifo)], stdout=subprocess.PIPE)
    done = smoke("health", "--url", service + "/health", "--output", str(fifo), "--quiet")  # the reader comes late
    assert done.returncode == 0 and json.loads(late.communicate(timeout=10)[0])["status"] == "pass"
    done, took = timed_run("health", "--url", service + "/health", "--output", str(fifo), "--deadline", "1")
    assert 1 <= took < 5 and done.returncode == 3 and report_of(done)["exit_code"] == 3  # the reader waited for
    assert report_of(done)["problems"] == ["--output: cannot write %s: no process opened the FIFO to read "
                                           "within 1s" % fifo]  # what --deadline left, at least a second


def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(service, tmp_path):
    target = tmp_path / "target.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    done = smoke("health", "--url", service + "/health", "--output", str(link), "--quiet")
    assert done.returncode == 0 and link.is_symlink()
    assert json.loads(target.read_text())["status"] == "pass" and stat.S_IMODE(target.stat().st_mode) == 0o640
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "new.json")
    assert smoke("health", "--url", service + "/health", "--output", str(dangling), "--quiet").returncode == 0
    assert dangling.is_symlink() and json.loads((tmp_path / "new.json").read_text())["status"] == "pass"


def test_output_to_anything_else_is_refused_before_the_run(service, tmp_path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    cases = [(str(tmp_path), "is a directory"), (str(tmp_path / "sock"), "is a socket")]
    block = next((os.path.join("/dev", d) for d in sorted(os.listdir("/dev"))
                  if stat.S_ISBLK(os.stat(os.path.join("/dev", d)).st_mode)), None)
    if block:
        cases.append((block, "is a block device"))
    for path, reason in cases:
        done = smoke("health", "--url", service + "/health", "--output", path)
        assert done.returncode == 2 and done.stdout == "" and reason in done.stderr, (path, done.stderr)
    if block:
        assert stat.S_ISBLK(os.stat(block).st_mode)
    listener.close()


def test_output_to_dev_stdout_appends_where_stdout_goes_and_replaces_nothing(service, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("earlier lines\n")
    with open(str(log), "a") as out:
        done = subprocess.run([sys.executable, SMOKE, "health", "--url", service + "/health", "--output", "/dev/stdout"],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert text.startswith("earlier lines\n") and text.count('"schema": "smoke.report/1"') == 2


def test_an_output_path_that_is_not_utf8_keeps_the_printed_report(service, tmp_path):
    fifo = os.path.join(str(tmp_path).encode(), b"f\xff.fifo")
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable.encode(), SMOKE.encode(), b"health", b"--url",
                           (service + "/health").encode(), b"--output", fifo, b"--deadline", b"1"],
                          capture_output=True, timeout=60)
    report = strict_json(done.stdout.decode("utf-8"))
    assert done.returncode == 3 == report["exit_code"] and "no process opened the FIFO" in report["problems"][0]


@pytest.mark.parametrize("name", ["/proc/thread-self/fd/1", "/dev/fd/../fd/1", "/proc//self/fd/1",
                                  "/proc/self/fd/./1"])
def test_every_spelling_of_our_stdout_is_appended_to(service, tmp_path, name):
    log = tmp_path / "app.log"
    log.write_text("line1\n")
    inode = log.stat().st_ino
    with open(str(log), "a") as out:
        done = subprocess.run([sys.executable, SMOKE, "health", "--url", service + "/health", "--output", name,
                               "--quiet"], stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0 and log.stat().st_ino == inode and log.read_text().startswith("line1\n")


def test_descriptors_we_cannot_write_or_do_not_own_are_refused_before_the_run(service):
    for name, reason in (("/dev/stdin", "not open for writing"), ("/dev/fd/9", "not open for writing"),
                         ("/proc/1/fd/1", "a descriptor of another process")):
        with open(os.devnull, "rb") as read_only:  # subprocess.DEVNULL would open it read-write
            done = smoke("health", "--url", service + "/health", "--output", name, stdin=read_only)
        assert done.returncode == 2 and reason in done.stderr and done.stdout == "", (name, done.stderr)


def test_an_empty_output_name_is_an_error(service):
    done = smoke("health", "--url", service + "/health", "--output", "")
    assert done.returncode == 2 and "--output: give a file name" in done.stderr


def test_a_failed_write_and_the_printed_report_agree_on_the_exit_code(service):
    for path, code in (("/health", 3), ("/fault/500", 1)):
        done = smoke("health", "--url", service + path, "--output", "/dev/full")
        assert done.returncode == code == report_of(done)["exit_code"]
        assert report_of(done)["status"] == ("error" if code == 3 else "fail")
        assert "No space left on device" in done.stderr


def test_dot_dot_after_a_link_is_the_link_targets_parent_as_for_any_program(service, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "lnk").symlink_to("../a/b")
    (tmp_path / "c" / "report2.json").mkdir()  # where a lexical c/lnk/.. would lead
    for name in ("report.json", "report2.json"):
        path = tmp_path / "c" / "lnk" / ".." / name
        done = smoke("health", "--url", service + "/health", "--output", path, "--state-dir", tmp_path / "s")
        assert done.returncode == 0 and done.stderr == "", done.stderr
        subprocess.run(["touch", str(path) + ".touched"], check=True)  # the kernel's meaning: a/, not c/
        assert json.loads((tmp_path / "a" / name).read_text())["status"] == "pass"
        assert (tmp_path / "a" / (name + ".touched")).exists() and not (tmp_path / "c" / name).is_file()


def test_a_report_path_that_became_a_directory_during_the_run_is_exit_3_never_0(service, tmp_path):
    out = tmp_path / "report.json"  # free when the run starts; a check makes it a directory meanwhile
    path = config(tmp_path, [{"name": "up", "kind": "http", "url": service + "/health"},
                             {"name": "mkdir", "kind": "command", "command": ["mkdir", str(out)]}])
    done = smoke("health", "--config", path, "--output", out, "--state-dir", tmp_path / "s")
    assert done.returncode == 3 == report_of(done)["exit_code"] and report_of(done)["status"] == "error"
    assert "--output: cannot write %s: Is a directory" % out in done.stderr and out.is_dir()
    with pytest.raises(IsADirectoryError):
        sinks.stage(str(out), 10)


# --- another local user cannot steer where a report goes (run as root) -----------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a link of another user (nobody) is made with lchown")
def test_a_report_is_never_written_through_another_users_link_or_over_their_file(service, tmp_path):
    from conftest import NOBODY, planted_link, shared_dir
    victim = tmp_path / "victim"
    victim.write_text("precious")
    shared = shared_dir(tmp_path)
    planted_link(shared / "smoke-report.json", victim)
    theirs = shared / "theirs.xml"
    theirs.write_text("theirs")
    os.chown(str(theirs), NOBODY, NOBODY)
    for flag, path in (("--output", shared / "smoke-report.json"), ("--junit", theirs),
                       ("--prom", shared / "smoke-report.json")):
        done = smoke("health", "--url", service + "/health", flag, path, "--state-dir", tmp_path / "s")
        assert done.returncode == 2 and done.stdout == "" and flag in done.stderr, (flag, done.stderr)
    assert victim.read_text() == "precious" and theirs.read_text() == "theirs"
    done = smoke("health", "--url", service + "/health", "--output", shared / "mine.json", "--state-dir",
                 tmp_path / "s")  # a new file of ours in /tmp is fine
    assert done.returncode == 0 and json.loads((shared / "mine.json").read_text())["status"] == "pass"


def test_no_flag_that_writes_a_file_replaces_a_config_a_run_would_read(service, tmp_path):
    """perf --save-baseline, history --html and summary --html go through the check the run's --output
    does (sinks.check_report): ./smoke.json beside them, the --config given, $SMOKE_CONFIG's, by name, a
    link or another name (a hard link), is exit 2 in one line before anything is run or written."""
    here = tmp_path / "here"
    here.mkdir()
    found = here / "smoke.json"
    found.write_text(json.dumps({"health": {"checks": [{"name": "up", "kind": "http", "url": service + "/health"}]}}))
    given = tmp_path / "given.json"
    given.write_text(found.read_text())
    os.link(str(given), str(tmp_path / "hard.json"))
    os.symlink(str(given), str(tmp_path / "link.json"))
    (tmp_path / "reports").mkdir()
    writers = {"--save-baseline": ["perf", "--url", service + "/health", "--requests", "5"],
               "--html": ["history", "--state-dir", str(tmp_path / "state")],
               "summary --html": ["summary", str(tmp_path / "reports")]}
    for name, command in writers.items():
        flag = name.split()[-1]
        cases = [("smoke.json", [], {}, "is a config a run without --config reads (smoke.json)"),
                 (str(tmp_path / "link.json"), [], {"SMOKE_CONFIG": str(given)},
                  "is a config a run without --config reads (%s)" % given)]
        if command[0] != "summary":  # it reads no config
            cases.append((str(tmp_path / "hard.json"), ["--config", str(given)], {}, "is the config file (%s)" % given))
        for path, more, env, said in cases:
            done = smoke(*command, *more, flag, path, cwd=str(here), env=env)
            assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, (name, done.stderr)
            assert "error: %s %s: %s: writing there would replace it; give %s a file of its own" % (
                flag, path, said, flag) in done.stderr, done.stderr
            assert found.read_text() == given.read_text() and os.path.islink(str(tmp_path / "link.json"))
    assert not (tmp_path / "state").exists()
    done = smoke("history", "--state-dir", str(tmp_path / "state"), "--html", "history.html", cwd=str(here))
    assert done.returncode == 0 and (here / "history.html").read_text().startswith("<!DOCTYPE html>"), done.stderr
