"""smoke.py summary: the fleet view of real reports from real runs against servers the tests start:
hosts worst first, which hosts fail which checks, the exit code of the worst host; reports that
are none (a FIFO, 10 GB, garbage, a text report, someone else's JSON) named and never waited for;
perf loads run on several "hosts" at once merged into one: the summed rate, percentiles exact
from the samples kept and, from the latency sketches alone, within their accuracy of those."""

import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import NOBODY, ROOT, as_root, free_port, planted_link, shared_dir
from checks import summary as summary_
from checks.summary import load as load_

SMOKE = str(ROOT / "smoke.py")


def run(*args, timeout=60, **kwargs):
    return subprocess.run([sys.executable, SMOKE] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def health(output, *flags, state=None):
    """A real health run's JSON report written to output; its process."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return run("health", *flags, "--output", output, "--quiet", "--state-dir", state or output.parent / "state")


def summary(*args, **kwargs):
    done = run("summary", *args, **kwargs)
    return done, (json.loads(done.stdout) if "--format" in args and done.stdout.strip() else None)


@pytest.fixture(scope="module")
def fleet(service, tmp_path_factory):
    """DIR/HOST/report.json of three hosts, as Ansible's fetch leaves them: web-1 and web-2 pass,
    web-3's api answers nothing and its db port is closed."""
    root = tmp_path_factory.mktemp("fleet")
    closed = free_port()
    for host in ("web-1", "web-2", "web-3"):
        api = service + "/health" if host != "web-3" else "http://127.0.0.1:%d/health" % closed
        db = service.rsplit(":", 1)[1] if host != "web-3" else closed
        done = health(root / "fetched" / host / "report.json", "--url", api, "--name", "api", "--tcp",
                      "127.0.0.1:%s" % db, "--name", "db", "--instance", host, state=root / host)
        assert done.returncode == (1 if host == "web-3" else 0), done.stderr
    return root


def test_the_fleet_view_puts_the_failing_host_and_its_checks_first(fleet):
    done, view = summary(fleet / "fetched", "--format", "json")
    assert done.returncode == 1 and done.stderr == "", done.stderr
    assert [(row["host"], row["status"]) for row in view["hosts"]] == [("web-3", "fail"), ("web-1", "pass"),
                                                                       ("web-2", "pass")]
    assert view["hosts"][0]["failing"] == ["api", "db"] and view["counts"] == {"pass": 2, "warn": 0, "fail": 1,
                                                                               "error": 0}
    assert [(row["name"], row["fail"], row["pass"], row["statuses"]) for row in view["checks"]] == [
        ("api", ["web-3"], ["web-1", "web-2"], ["fail", "pass", "pass"]),
        ("db", ["web-3"], ["web-1", "web-2"], ["fail", "pass", "pass"])]
    assert view["checks"][0]["message"].startswith("web-3: ") and view["status"] == "fail" and view["exit_code"] == 1
    text = run("summary", fleet / "fetched").stdout.splitlines()
    assert text[0] == "smoke.py summary: 3 hosts (1 fail, 2 pass) from %s; FAIL, exit 1" % (fleet / "fetched")
    assert text[3].split()[:2] == ["web-3", "FAIL"] and text[3].endswith("api, db")
    assert [line.split()[:6] for line in text[8:10]] == [["api", "health", "1", "of", "3", "F.."],
                                                         ["db", "health", "1", "of", "3", "F.."]]
    assert text[10].startswith("hosts: a letter each")


def test_reports_as_files_or_flat_in_a_directory_and_a_passing_fleet_exits_0(fleet, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for host in ("web-1", "web-2"):
        shutil.copy(str(fleet / "fetched" / host / "report.json"), str(flat / ("%s.json" % host)))
    done, view = summary(flat, "--format", "json")
    assert done.returncode == 0 and [row["host"] for row in view["hosts"]] == ["web-1", "web-2"]
    files = [fleet / "fetched" / host / "report.json" for host in ("web-1", "web-2", "web-3")]
    done, view = summary(*files, "--format", "json")
    assert done.returncode == 1 and view["hosts"][0]["host"] == "web-3" and view["reports"] == 3


def test_a_host_is_named_by_its_instance_else_its_host_name_else_its_place(service, tmp_path):
    plain = tmp_path / "fetched" / "db-1" / "report.json"
    assert health(plain, "--url", service + "/health").returncode == 0
    nameless = tmp_path / "fetched" / "db-2" / "report.json"
    nameless.parent.mkdir()
    report = json.loads(plain.read_text())
    del report["host"]
    nameless.write_text(json.dumps(report))
    _, view = summary(tmp_path / "fetched", "--format", "json")
    assert sorted(row["host"] for row in view["hosts"]) == sorted([socket.gethostname(), "db-2"])


def test_a_host_with_two_reports_of_a_command_is_said_and_both_count(service, tmp_path):
    """Two hosts that both call themselves localhost, or an old report beside a new one: said, and
    the failing one is not passed over."""
    assert health(tmp_path / "a.json", "--url", service + "/health").returncode == 0
    assert health(tmp_path / "b.json", "--tcp", "127.0.0.1:%d" % free_port()).returncode == 1
    done, view = summary(tmp_path / "a.json", tmp_path / "b.json", "--format", "json")
    host = socket.gethostname()
    assert done.returncode == 1 and [(row["host"], row["status"], len(row["reports"])) for row in view["hosts"]] == [
        (host, "fail", 2)]
    assert "host %s has 2 health reports" % host in done.stderr and "--instance" in done.stderr


def _hostile_dir(tmp_path, service):
    """A fetched directory where every host but web-1 left something that is no report."""
    root = tmp_path / "fetched"
    assert health(root / "web-1" / "report.json", "--url", service + "/health", "--instance", "web-1").returncode == 0
    for host in ("fifo", "huge", "garbage", "text", "foreign", "twice", "future", "zero", "empty", "loop"):
        (root / host).mkdir()
    os.mkfifo(str(root / "fifo" / "report.json"))  # no writer ever comes
    with open(str(root / "huge" / "report.json"), "wb") as fh:
        fh.truncate(10 << 30)  # 10 GB, sparse
    (root / "garbage" / "report.json").write_bytes(b"\x00\xff{not json")
    text = run("health", "--url", service + "/health", "--format", "text", "--state-dir", tmp_path / "state")
    (root / "text" / "report.json").write_text(text.stdout)
    (root / "foreign" / "report.json").write_text('{"hello": "world"}')
    (root / "twice" / "report.json").write_text('{"schema": "smoke.report/1", "status": "pass", "status": "fail"}')
    (root / "future" / "report.json").write_text('{"schema": "smoke.report/2", "status": "pass", "results": []}')
    os.symlink("/dev/zero", str(root / "zero" / "report.json"))
    os.symlink(str(root / "loop"), str(root / "loop" / "again"))  # a link to a directory is not walked
    return root


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # reading 10 GB, or 64 MB of /dev/zero as JSON, fails


def test_what_is_no_report_is_named_and_nothing_hangs_or_fills_memory(service, tmp_path):
    root = _hostile_dir(tmp_path, service)
    began = time.monotonic()
    done, view = summary(root, "--format", "json", preexec_fn=_capped)
    took = time.monotonic() - began
    assert took < 10 and done.returncode == 3, (took, done.stderr)  # no host failed: could not evaluate
    problems = {row["host"]: row["reports"][0]["problem"] for row in view["hosts"] if row["status"] == "error"}
    assert problems == {
        "fifo": "cannot read it: not a regular file", "huge": "larger than 64 MB: not a smoke.py report",
        "garbage": "not JSON: not UTF-8 text",
        "text": problems["text"], "foreign": "not a smoke.py report (no schema smoke.report/1)",
        "twice": "the top level: 'status' is given twice (the second would silently replace the first)",
        "future": "schema smoke.report/2, not smoke.report/1: not a report this smoke.py reads",
        "zero": "cannot read it: not a regular file", "empty": "no report (*.json) in it", "loop": summary_.LINK}
    assert problems["text"].startswith("not JSON (a --format text report? summary reads the JSON one): ")
    assert [row["host"] for row in view["hosts"]][-1] == "web-1"  # the worst first
    for host, problem in problems.items():
        where = {"empty": root / host, "loop": root / "loop" / "again"}.get(host, root / host / "report.json")
        assert "smoke.py summary: %s: %s: %s\n" % (host, where, problem) in done.stderr
    assert health(root / "web-2" / "report.json", "--tcp", "127.0.0.1:%d" % free_port(),
                  "--instance", "web-2").returncode == 1
    assert summary(root, preexec_fn=_capped)[0].returncode == 1  # a host failed: that is known, whatever else is


def test_a_host_directory_that_is_a_link_is_named_never_followed_nor_passed_over(service, tmp_path):
    """A fetched tree where web-2's directory is a link (to its reports elsewhere, or anywhere):
    the summary says so, as a host it could not read, rather than a fleet of one that passes."""
    root, elsewhere = tmp_path / "fetched", tmp_path / "elsewhere"
    assert health(root / "web-1" / "report.json", "--url", service + "/health", "--instance", "web-1").returncode == 0
    assert health(elsewhere / "report.json", "--url", service + "/health", "--instance", "web-2").returncode == 0
    os.symlink(str(elsewhere), str(root / "web-2"))
    os.symlink(str(elsewhere), str(root / "web-1" / "more"))
    done, view = summary(root, "--format", "json")
    assert done.returncode == 3, done.stderr
    assert [(row["host"], row["status"], [report["problem"] for report in row["reports"]])
            for row in view["hosts"]] == [("web-1", "error", [None, summary_.LINK]), ("web-2", "error", [summary_.LINK])]
    assert done.stderr.splitlines() == ["smoke.py summary: web-1: %s: %s" % (root / "web-1" / "more", summary_.LINK),
                                        "smoke.py summary: web-2: %s: %s" % (root / "web-2", summary_.LINK)]
    given = summary(root / "web-2" / "report.json")[0]  # a file named on the command line is read as given
    assert given.returncode == 0 and given.stderr == "", given.stderr


def test_a_host_directory_with_no_report_is_said_whatever_else_is_there_and_a_state_directory_is_no_host(
        service, tmp_path):
    """A report flat beside the host directories (fetched/control.json) once made an empty
    web-2/ pass unsaid. A state directory beside flat reports (health --state-dir DIR/state: its
    history, rollback's last-report.json) is smoke.py's, no host; a host directory holding a
    history beside its report is a host."""
    root = tmp_path / "fetched"
    assert health(root / "web-1" / "report.json", "--url", service + "/health", "--instance", "web-1").returncode == 0
    assert health(root / "control.json", "--url", service + "/health", "--instance", "control",
                  state=root / "state").returncode == 0
    shutil.copy(str(root / "control.json"), str(root / "state" / "last-report.json"))
    assert health(root / "web-3" / "report.json", "--url", service + "/health", "--instance", "web-3",
                  state=root / "web-3").returncode == 0
    assert (root / "state" / "history.jsonl").exists() and (root / "web-3" / "history.jsonl").exists()
    done, view = summary(root, "--format", "json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [row["host"] for row in view["hosts"]] == ["control", "web-1", "web-3"] and view["reports"] == 3
    (root / "web-2").mkdir()
    done, view = summary(root, "--format", "json")
    assert done.returncode == 3 and done.stderr == "smoke.py summary: web-2: %s: %s\n" % (root / "web-2",
                                                                                         summary_.NONE)
    assert [(row["host"], row["status"]) for row in view["hosts"]][0] == ("web-2", "error")


def test_a_host_whose_reports_come_from_two_host_directories_is_said(service, tmp_path):
    """fetched/h4/report.json of a run given --instance h1 (and another command): h4 is no host of
    its own, so the summary says where h1's reports came from rather than show three hosts of
    four directories unsaid."""
    root = tmp_path / "fetched"
    for host in ("h1", "h2", "h4"):
        assert health(root / host / "report.json", "--url", service + "/health",
                      "--instance", "h1" if host == "h4" else host).returncode == 0
    report = json.loads((root / "h4" / "report.json").read_text())
    (root / "h4" / "report.json").write_text(json.dumps(dict(report, command="all")))
    done, view = summary(root, "--format", "json")
    assert done.returncode == 0 and [row["host"] for row in view["hosts"]] == ["h1", "h2"]
    said = "host h1's reports come from 2 host directories (%s, %s): " % (root / "h1", root / "h4")
    assert view["warnings"] == [line[len("smoke.py summary: "):] for line in done.stderr.splitlines()]
    assert len(view["warnings"]) == 1 and view["warnings"][0].startswith(said) and "--instance" in done.stderr


@as_root
def test_a_report_another_user_could_have_written_is_that_hosts_problem(service, tmp_path):
    """As history refuses a history another user could have written: nobody's directory in a
    shared fetch directory (sticky, as /tmp), nobody's report, a report anyone may write, a
    link of nobody's, all in a directory anyone may change. Each is its host's problem, named
    (exit 3), never a pass another user chose. Root's and our own reports there read as ever."""
    fetched = shared_dir(tmp_path)
    assert health(tmp_path / "pass.json", "--url", service + "/health").returncode == 0
    for host in ("web-1", "theirs-dir", "theirs-file", "anyones-file", "theirs-link"):
        (fetched / host).mkdir()
        shutil.copy(str(tmp_path / "pass.json"), str(fetched / host / "report.json"))
    os.chown(str(fetched / "theirs-dir"), NOBODY, NOBODY)
    os.chown(str(fetched / "theirs-file" / "report.json"), NOBODY, NOBODY)
    (fetched / "anyones-file" / "report.json").chmod(0o666)
    os.unlink(str(fetched / "theirs-link" / "report.json"))
    planted_link(fetched / "theirs-link" / "report.json", tmp_path / "pass.json")
    done, view = summary(fetched, "--format", "json")
    assert done.returncode == 3, done.stderr
    problems = {row["host"]: row["reports"][0]["problem"] for row in view["hosts"]}
    trust = "; " + summary_.TRUST
    assert problems == {
        "theirs-dir": "not read: %s belongs to user %d, who may change it%s" % (fetched / "theirs-dir", NOBODY, trust),
        "theirs-file": "not read: it belongs to user %d%s" % (NOBODY, trust),
        "anyones-file": "not read: it can be written by other users (mode 0666)%s" % trust,
        "theirs-link": "not read: %s is a link of user %d, not ours or root's%s" % (
            fetched / "theirs-link" / "report.json", NOBODY, trust),
        socket.gethostname(): None}
    assert all(problems[host] in done.stderr for host in problems if problems[host])
    fetched.chmod(0o777)  # not sticky: anyone may rename what is in it, web-1's directory too
    done, view = summary(fetched / "web-1", "--format", "json")
    assert done.returncode == 3 and "can be changed by other users (mode 0777" in view["hosts"][0]["reports"][0][
        "problem"]


def test_a_page_not_written_is_in_the_verdict_printed(service, tmp_path):
    report = tmp_path / "report.json"
    assert health(report, "--url", service + "/health", "--instance", "a").returncode == 0
    def tiny_files():  # the page's first kilobyte is all a file may hold: writing it fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    done, view = summary(report, "--format", "json", "--html", tmp_path / "page.html", preexec_fn=tiny_files)
    assert done.returncode == 3 and view["status"] == "error" and view["exit_code"] == 3, done.stderr
    assert view["warnings"] == [line[len("smoke.py summary: "):] for line in done.stderr.splitlines()]
    assert view["warnings"][0].startswith("--html: ")
    done = summary(report, "--html", tmp_path / "page.html", preexec_fn=tiny_files)[0]
    assert done.returncode == 3 and done.stdout.splitlines()[0].endswith("ERROR, exit 3"), done.stdout
    assert done.stderr.count("\n") == 1 and done.stdout.count("warning: --html: ") == 1


def test_exit_codes_follow_the_worst_host(service, tmp_path):
    passed, erred = tmp_path / "pass.json", tmp_path / "error.json"
    assert health(passed, "--url", service + "/health", "--instance", "a").returncode == 0
    config = tmp_path / "smoke.json"
    config.write_text(json.dumps({"health": {"checks": [{"name": "probe", "kind": "command",
                                                         "command": ["/nonexistent/probe"]}]}}))
    assert health(erred, "--config", config, "--instance", "b").returncode == 3
    assert summary(passed)[0].returncode == 0
    done, view = summary(passed, erred, "--format", "json")
    assert done.returncode == 3 and view["hosts"][0]["host"] == "b" and view["hosts"][0]["status"] == "error"
    typo = summary(tmp_path / "missing.json")[0]  # nothing at any path given: a typo, not a host that sent nothing
    assert typo.returncode == 2 and typo.stderr == "smoke.py summary: error: %s: no such file or directory\n" % (
        tmp_path / "missing.json"), typo.stderr
    done, view = summary(passed, tmp_path / "missing.json", "--format", "json")  # one of them is: that host sent none
    assert done.returncode == 3 and view["hosts"][0]["reports"][0]["problem"] == \
        "cannot read it: No such file or directory"
    (tmp_path / "nothing").mkdir()
    done = summary(tmp_path / "nothing")[0]
    assert done.returncode == 3 and "no report (*.json) in it" in done.stderr


def test_an_interrupted_run_is_a_host_that_could_not_be_told(tmp_path):
    config, output = tmp_path / "smoke.json", tmp_path / "report.json"
    config.write_text(json.dumps({"health": {"checks": [{"name": "slow", "kind": "command", "command": ["sleep", "30"],
                                                         "timeout": 60}]}}))
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", str(config), "--output", str(output),
                             "--state-dir", str(tmp_path / "state")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 143 and json.loads(output.read_text())["interrupted"] == "SIGTERM"
    done, view = summary(output, "--format", "json")
    assert done.returncode == 3 and view["hosts"][0]["status"] == "error"


@pytest.mark.parametrize("args, words", [
    ([], "the following arguments are required"),
    (["x.json", "--threshold", "p95 < 10"], "'p95' is not a perf metric; did you mean p95_ms?"),
    (["x.json", "--threshold", "p95_ms < 10ms"], "write it without a unit"),
    (["x.json", "--html", "/nonexistent/dir/page.html"], "--html"),
    (["x.json", "--format", "yaml"], "invalid choice"),
])
def test_bad_usage_is_exit_2_in_one_line(args, words):
    done = run("summary", *args)
    assert done.returncode == 2 and words in done.stderr and done.stdout == "", done.stderr


# --- the page ------------------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>\x1b[31m'


def test_the_page_shows_the_fleet_and_escapes_what_reports_say(fleet, service, tmp_path):
    from test_page import CHROMIUM, Page, chromium, strict

    fetched = tmp_path / "fetched"
    shutil.copytree(str(fleet / "fetched"), str(fetched))
    assert health(fetched / "evil" / "report.json", "--tcp", "127.0.0.1:%d" % free_port(), "--name", HOSTILE,
                  "--instance", HOSTILE).returncode == 1
    page = tmp_path / "fleet.html"
    done = run("summary", fetched, "--html", page)
    assert done.returncode == 1 and "\x1b" not in done.stdout and "\\x1b[31m" in done.stdout
    text = page.read_text()
    parsed = strict(text)
    assert "<script>" not in text and HOSTILE.replace("\x1b", "\\x1b") in parsed.text
    assert parsed.text.index("web-3") < parsed.text.index("web-1") and "Checks by host" in parsed.text
    assert text.count('class="f-fail"') >= 3  # web-3's api and db, evil's check
    if CHROMIUM:
        dom = Page(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
        assert dom.tags["body"] == 1 and not dom.tags["script"] and "web-3" in dom.text


# --- perf loads spread over hosts ----------------------------------------------------------------

def _perf(output, url, *flags):
    return subprocess.Popen([sys.executable, SMOKE, "perf", "--url", url, "--output", str(output), "--quiet",
                             "--state-dir", str(output.parent / "state")] + list(flags),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def spread(service, tmp_path_factory):
    """One load from three "hosts" at once against the fixture service, each keeping its samples."""
    root = tmp_path_factory.mktemp("spread")
    procs = [_perf(root / ("load-%d.json" % i), service + "/health", "--requests", "2500", "--connections", "3",
                   "--keep-samples", "--instance", "load-%d" % i, "--threshold", "p95_ms < 1000")
             for i in (1, 2, 3)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    return root, [json.loads((root / ("load-%d.json" % i)).read_text()) for i in (1, 2, 3)]


def _rank(count, p):
    return max(1, math.ceil(round(p * count / 100.0, 9)))


def _exact(reports):
    """The nearest-rank percentiles of every sample of every report, told here from the samples."""
    every = sorted(v for report in reports for v in report["results"][0]["facts"]["samples_ms"])
    return {name: every[_rank(len(every), p) - 1] for name, p in (("p50_ms", 50), ("p90_ms", 90), ("p95_ms", 95),
                                                                  ("p99_ms", 99), ("p999_ms", 99.9))}


def test_a_load_from_three_hosts_merges_into_the_summed_rate_and_exact_percentiles(spread):
    root, reports = spread
    done, view = summary(root, "--format", "json")
    assert done.returncode == 0, done.stderr
    [merged] = view["loads"]
    facts, shares = merged["facts"], [report["results"][0]["facts"] for report in reports]
    assert merged["hosts"] == ["load-1", "load-2", "load-3"] and merged["left_out"] == [] and merged["status"] == "pass"
    assert facts["rps"] == round(sum(f["rps"] for f in shares), 1) and facts["overlap_s"] > 0
    assert (facts["count"], facts["ok"], facts["errors"]) == (7500, 7500, 0)
    assert all(len(f["samples_ms"]) == f["ok"] == 2500 for f in shares)  # perf --keep-samples: every latency
    assert not {"samples_ms", "latency_sketch"} & set(reports[0]["metrics"]["perf"]["targets"]["url"])
    assert facts["percentiles_from"] == "samples" and {k: facts[k] for k in _exact(reports)} == _exact(reports)
    assert facts["max_ms"] == max(f["max_ms"] for f in shares) and facts["min_ms"] == min(f["min_ms"] for f in shares)
    assert merged["expect"] == ["p95_ms < 1000"] and facts["observed"] == {"p95_ms < 1000": facts["p95_ms"]}
    text = run("summary", root).stdout
    assert "perf url on 3 hosts (load-1, load-2, load-3), under way together for" in text
    assert "(n 7500; exact, from the samples kept)" in text and "%s req/s (the sum of the hosts')" % facts["rps"] in text


def _close(found, exact, name):
    """Within the sketch's 0.5%, and the 0.001 ms every report rounds to."""
    assert abs(found - exact) <= 0.005 * exact + 0.0015, (name, found, exact)


def test_from_the_latency_sketches_alone_the_percentiles_are_within_half_a_percent(spread, tmp_path):
    root, reports = spread
    exact = _exact(reports)
    for i, report in enumerate(reports, 1):
        report = json.loads(json.dumps(report))
        own = dict(report["results"][0]["facts"])  # perf's own percentiles: exact, over every sample of the run
        del report["results"][0]["facts"]["samples_ms"]
        (tmp_path / ("load-%d.json" % i)).write_text(json.dumps(report))
        _, alone = summary(tmp_path / ("load-%d.json" % i), "--threshold", "error_rate < 0.01", "--format", "json")
        for name in exact:  # one host's sketch against perf's own exact numbers
            _close(alone["loads"][0]["facts"][name], own[name], name)
    done, view = summary(tmp_path, "--format", "json")
    facts = view["loads"][0]["facts"]
    assert done.returncode == 0 and facts["percentiles_from"] == "sketch" and facts["accuracy"] == 0.005
    for name, value in exact.items():  # three hosts' sketches added against every sample of all three
        _close(facts[name], value, name)
    assert "from the latency sketches, within 0.5%" in run("summary", tmp_path).stdout


def test_the_merged_load_is_judged_by_its_thresholds_and_what_cannot_be_merged_is_an_error(spread, tmp_path):
    root, reports = spread
    rates = [report["results"][0]["facts"]["rps"] for report in reports]
    between = max(rates) + (sum(rates) - max(rates)) / 2  # more than any host sent, less than all did
    done, view = summary(root, "--threshold", "rps > %d" % between, "--format", "json")
    assert done.returncode == 0 and view["loads"][0]["expect"] == ["p95_ms < 1000", "rps > %d" % between]
    done, view = summary(root, "--threshold", "p99_ms < 0.001", "--format", "json")
    assert done.returncode == 1 and view["loads"][0]["message"].startswith("p99_ms: expected < 0.001, got ")
    for i, report in enumerate(reports, 1):  # reports of a smoke.py that carried neither samples nor a sketch
        report = json.loads(json.dumps(report))
        for key in ("samples_ms", "latency_sketch"):
            del report["results"][0]["facts"][key]
        report["results"][0]["expect"].append("p95_ratio < 1.2")  # as perf --baseline would judge it
        (tmp_path / ("old-%d.json" % i)).write_text(json.dumps(report))
    done, view = summary(*[tmp_path / ("old-%d.json" % i) for i in (1, 2, 3)], "--threshold", "rps > 1",
                         "--format", "json")
    assert done.returncode == 3 and view["loads"][0]["status"] == "error"
    assert view["loads"][0]["message"] == "p95_ms < 1000: not merged: a report has no latency sketch of all its " \
                                          "samples (from an older smoke.py?)"
    assert view["loads"][0]["facts"]["observed"]["rps > 1"] == view["loads"][0]["facts"]["rps"]
    assert view["loads"][0]["unjudged"] == ["p95_ratio < 1.2: a ratio to the host's own baseline: judged on that "
                                            "host alone"]


def _facts(**changes):
    def change(report):
        report["results"][0]["facts"].update(changes)
    return change


def _sketch(**changes):
    def change(report):
        report["results"][0]["facts"]["latency_sketch"].update(changes)
    return change


@pytest.mark.parametrize("change, said", [
    (_facts(count=1e308, ok=1e308), "count is 1e+308, not a whole number from 0 to 1e+12"),
    (_facts(count=10 ** 400), "count is 1000"),  # past any float: no OverflowError either
    (_facts(errors=2.5), "errors is 2.5, not a whole number from 0 to 1e+12"),
    (_facts(rps=float("nan")), "rps is nan, not a number from 0 to 1e+09"),
    (_facts(mean_ms=1e308), "mean_ms is 1e+308, not a number from 0 to 1e+09"),
    (_facts(min_ms=-1e308), "min_ms is -1e+308, not a number from 0 to 1e+09"),
    (_facts(errors_by_kind={"timeout": -5}), "errors_by_kind is {'timeout': -5}, not counts of errors by kind"),
    (_facts(samples_ms=[1e308] * 2500), "samples_ms holds what is not a latency (a number of ms from 0 to 1e+09)"),
    (_sketch(accuracy=1), "latency_sketch's accuracy is 1, not one from 1e-06 to 0.5"),
    (_sketch(accuracy=1e-300), "latency_sketch's accuracy is 1e-300, not one from 1e-06 to 0.5"),
    (_sketch(buckets=[[10 ** 6, 2500]]), "latency_sketch has a bucket of index 1000000, past any latency (from "
                                         "-1383 to 2074 at accuracy 0.005)"),
    (lambda report: report.update(started_at="2026-12-07T04:02:321e400Z"),
     "its report's started_at is '2026-12-07T04:02:321e400Z', not a time"),
    (lambda report: report.update(duration_ms=1e308), "its report's duration_ms is 1e+308, not a number from 0 to 1e+09"),
])
def test_a_number_no_load_gives_is_an_error_naming_the_host_never_a_traceback(spread, tmp_path, change, said):
    """Extreme but finite numbers once crashed the merge (OverflowError, ZeroDivisionError: exit 1,
    as if a host had failed). Each is checked before anything is added: the load is an error
    naming the host and the number (exit 3), the other hosts' shares still shown."""
    _, reports = spread
    for i, report in enumerate(reports, 1):
        report = json.loads(json.dumps(report))
        if i == 2:
            change(report)
        (tmp_path / ("load-%d.json" % i)).write_text(json.dumps(report))
    done, view = summary(tmp_path, "--format", "json", "--html", tmp_path / "page.html")
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    [merged] = view["loads"]
    assert merged["status"] == "error" and merged["message"].startswith("load-2's load cannot be merged: " + said)
    assert merged["hosts"] == ["load-1", "load-3"] and merged["left_out"][0]["host"] == "load-2"
    assert merged["left_out"][0]["why"].startswith("its load cannot be merged: " + said)
    text = run("summary", tmp_path)
    assert text.returncode == 3 and "perf url on 2 hosts (load-1, load-3)" in text.stdout, text.stderr
    assert "  left out: load-2: its load cannot be merged: " + said in text.stdout


def test_ten_thousand_hosts_runs_are_lined_up_in_n_log_n():
    """Which runs were under way together was asked of every run for every run: 10,000 hosts
    took seconds. Now a sort and a search: the moment most were under way, the earliest such."""
    spans = [(i, float(i % 100), float(i % 100) + 50.0) for i in range(10000)]  # 100 starts, each run 50 s
    began = time.monotonic()
    chosen = load_._together(spans)
    assert time.monotonic() - began < 0.5
    assert chosen == [i for i, start, _ in spans if start <= 50.0]  # at t=50: the runs begun 0..50 s
    assert load_._together([(0, 0.0, 1.0), (1, 5.0, 9.0), (2, 6.0, 7.0)]) == [1, 2]


def test_a_report_bigger_than_the_memory_this_host_gives_is_its_hosts_problem(service, tmp_path):
    """Two reports of 50 MB (ten million numbers in a fact: 320 MB as Python objects) under
    ulimit -v: a MemoryError while one was read ended the summary with a traceback (exit 1: a
    host failed). It is that report's problem, named, and the host that fits is told (exit 3)."""
    fetched = tmp_path / "fetched"
    assert health(fetched / "small" / "report.json", "--url", service + "/health", "--instance", "small").returncode == 0
    report = json.loads((fetched / "small" / "report.json").read_text())
    report["results"][0]["facts"]["numbers"] = [1.5] * 10000000
    for host in ("big-1", "big-2"):
        (fetched / host).mkdir()
        (fetched / host / "report.json").write_text(json.dumps(dict(report, instance=host)))

    def little_memory():
        resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))

    done, view = summary(tmp_path / "fetched", "--format", "json", preexec_fn=little_memory)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    problems = {row["host"]: row["reports"][0]["problem"] for row in view["hosts"]}
    assert problems["small"] is None and set(problems) == {"small", "big-1", "big-2"}
    assert problems["big-1"] == problems["big-2"] == summary_.MEMORY % ((fetched / "big-1" / "report.json").stat()
                                                                          .st_size >> 20)


def test_a_host_whose_run_was_not_under_way_with_the_others_is_left_out_of_the_sum(service, tmp_path):
    flags = ["--duration", "1", "--connections", "2"]  # a second each: the two started together overlap
    together = [_perf(tmp_path / ("load-%d.json" % i), service + "/health", "--instance", "load-%d" % i, *flags)
                for i in (1, 2)]
    assert [proc.wait(60) for proc in together] == [0, 0]
    assert _perf(tmp_path / "load-3.json", service + "/health", "--instance", "load-3", *flags).wait(60) == 0
    done, view = summary(tmp_path, "--format", "json")
    [merged] = view["loads"]
    shares = [json.loads((tmp_path / ("load-%d.json" % i)).read_text())["results"][0]["facts"] for i in (1, 2)]
    assert done.returncode == 0 and merged["hosts"] == ["load-1", "load-2"]
    assert merged["facts"]["count"] == sum(f["count"] for f in shares)
    assert merged["facts"]["rps"] == round(sum(f["rps"] for f in shares), 1)
    assert [out["host"] for out in merged["left_out"]] == ["load-3"]
    assert "was not under way with the others'" in merged["left_out"][0]["why"]


def test_thresholds_with_no_perf_load_to_judge_are_an_error(fleet):
    done = run("summary", fleet / "fetched" / "web-1", "--threshold", "rps > 1")
    assert done.returncode == 3 and "--threshold: no perf load in these reports to judge it on" in done.stderr
