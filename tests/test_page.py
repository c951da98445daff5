"""The HTML page (checks/page.py) of real reports: health against the fixture service's hostile
answers, perf under a real load, deploy against fixtures/model_server.py, heartbeat with
fixtures/cluster.py, rollback executed. Each page is read by an HTML parser (every tag closed, no
script, nothing fetched) and, where Debian's chromium is installed, loaded by it headless."""

import html
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser

import pytest

from conftest import ROOT, report_of, smoke
from checks import page, state
from fixtures import model_server

HOSTILE = "<img src=x onerror=alert(1)>"
CLOSER = "</textarea><script>alert(1)</script>"
ATTRIBUTE = '"><svg onload=alert(3)>'
SECRET = "pl<b>ain</b>-s3cret-7781"
VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed here (apt-get "
                                                              "install chromium): the page is not opened in a browser")


class Page(HTMLParser):
    """A page read strictly: every element closed in order, no handler attribute, no URL but #anchors."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.texts, self.problems, self.attrs = [], Counter(), [], [], []
        self.feed(text)
        self.close()
        if self.stack:
            self.problems.append("left open: %s" % self.stack)
        self.text = "".join(self.texts)

    def handle_starttag(self, tag, attrs):
        self.handle_startendtag(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] += 1
        self.attrs.append((tag, dict(attrs)))
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append("<%s %s=...>" % (tag, name))
            if name in ("src", "href", "xlink:href", "action", "formaction", "data", "poster") \
                    and not (value or "").startswith("#"):
                self.problems.append("<%s %s=%r>" % (tag, name, value))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append("</%s> closes %s" % (tag, self.stack[-1:] or "nothing"))
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.texts.append(data)


def strict(text):
    """The page parsed, with the promises every page keeps checked."""
    parsed = Page(text)
    assert parsed.problems == [], parsed.problems[:5]
    assert not parsed.tags & Counter({"script": 1, "iframe": 1, "object": 1, "embed": 1, "img": 1, "link": 1,
                                      "form": 1, "base": 1, "textarea": 1})
    metas = {a.get("http-equiv", a.get("name")): a.get("content") for tag, a in parsed.attrs if tag == "meta"}
    assert metas["Content-Security-Policy"].startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    assert "script-src" not in metas["Content-Security-Policy"]
    assert metas["viewport"] == "width=device-width, initial-scale=1"
    assert "url(" not in text and "@import" not in text and "http-equiv=\"refresh\"" not in text
    assert "@media print" in text and "prefers-color-scheme:dark" in text
    assert "\x1b" not in text and "\u202e" not in text and "\x00" not in text
    return parsed


# --- real reports, one of each kind for the module -----------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("page")


def run_config(workdir, name, doc, *args, env=None):
    path = workdir / (name + ".json")
    path.write_text(json.dumps(doc))
    done = smoke(args[0], "--config", str(path), "--state-dir", str(workdir / (name + "-state")), *args[1:],
                 env=env, timeout=120)
    assert done.stdout.startswith("{"), done.stderr
    return report_of(done)


@pytest.fixture(scope="module")
def health(workdir, service):
    checks = [{"name": "ok", "kind": "http", "url": service + "/health", "expect": ["status == 200"]},
              {"name": HOSTILE, "kind": "http", "method": "POST", "url": service + "/echo?q=<script>alert(2)</script>",
               "headers": {"X-Note": ATTRIBUTE, "X-Plain": "${PLAIN}"}, "body": CLOSER + HOSTILE,
               "expect": ["status == 500"]},
              {"name": "terminal", "kind": "http", "url": service + "/hostile/terminal", "expect": ["status == 200"]},
              {"name": "says-markup", "kind": "command", "command": ["echo", HOSTILE, "${PLAIN}"],
               "expect": ["exit_code == 1"]},
              {"name": "slow", "kind": "http", "url": service + "/delay/150", "expect": ["latency_ms < 100"],
               "severity": "warning"},
              {"name": "missing", "kind": "command", "command": ["/nonexistent/tool"]}]
    return run_config(workdir, "health", {"health": {"checks": checks}}, "health", "--secret", "PLAIN",
                      env={"PLAIN": SECRET})


@pytest.fixture(scope="module")
def perf(workdir, service):
    target = {"name": "<b>api<b>", "url": service + "/latency?delay_ms=2&jitter_ms=3&error_rate=0.05",
              "requests": 200, "connections": 2, "thresholds": ["p95_ms < 1", "error_rate < 0.01", "rps > 10"]}
    return run_config(workdir, "perf", {"perf": {"targets": [target]}}, "perf")


@pytest.fixture(scope="module")
def deploy(workdir):
    server, url = model_server.serve_in_thread()
    section = {
        "targets": [{"name": "good", "vars": {"fail": []}}, {"name": "bad", "vars": {"fail": ["predict-500"]}}],
        "deploy": {"kind": "http", "method": "POST", "url": url + "/v1/models",
                   "json": {"name": "{name}", "build_s": 0.1, "fail": "{fail}"}, "expect": ["status == 201"],
                   "capture": {"model_id": "json.id"}},
        "ready": {"kind": "http", "url": url + "/v1/models/{model_id}", "until": ["json.status == ready"],
                  "interval": 0.05, "timeout": 3},
        "predict": {"kind": "http", "method": "POST", "url": url + "/v1/models/{model_id}/predict",
                    "json": {"prompt": "hi", "seed": 42}, "expect": ["status == 200"]},
        "logs": {"kind": "http", "url": url + "/v1/models/{model_id}/logs", "lines": ["Build succeeded"],
                 "interval": 0.05, "timeout": 1},
        "cleanup": {"kind": "http", "method": "DELETE", "url": url + "/v1/models/{model_id}",
                    "expect": ["status == 200"]}}
    try:
        yield run_config(workdir, "deploy", {"deploy": section}, "deploy")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def heartbeat(workdir):
    cluster = str(ROOT / "fixtures" / "cluster.py")
    table = {"run_dir": str(workdir / "run-{run_id}"),
             "coordinator": {"command": [sys.executable, cluster, "coordinator", "--port", "{port}", "--events",
                                         "{run_dir}/events.ndjson", "--interval", "0.2", "--timeout", "0.6"],
                             "ready_line": "listening"},
             "workers": {"count": 3, "command": [sys.executable, cluster, "worker", "--coordinator",
                                                 "127.0.0.1:{port}", "--name", "{worker}", "--id", "{worker_id}",
                                                 "--interval", "0.2"]},
             "events": {"log": "{run_dir}/events.ndjson", "worker_field": "worker_id"},
             "min_beats": 3, "stable_timeout": 5, "deadline": 2, "grace": 0.5, "heartbeat_interval": 0.2,
             "failure_timeout": 0.6}
    return run_config(workdir, "heartbeat", {"heartbeat": table}, "heartbeat")


@pytest.fixture(scope="module")
def rollback(workdir, service):
    doc = {"health": {"checks": [{"name": "api", "kind": "http", "url": service + "/status/503",
                                  "expect": ["status == 200"]},
                                 {"name": "home", "kind": "http", "url": service + "/health"}]},
           "rollback": {"triggers": ["check.api.status == fail", "pass_rate < 0.9", "p95_ms > 500"], "run": ["health"],
                        "steps": [{"name": "find", "kind": "command", "command": ["echo", "abc123"]},
                                  {"name": "revert", "kind": "command", "command": ["sleep", "0.1"]}],
                        "verify": ["health"], "verify_timeout": 0.6, "verify_interval": 0.2, "cooldown": 0}}
    return run_config(workdir, "rollback", doc, "rollback", "--execute")


KINDS = ("health", "perf", "deploy", "heartbeat", "rollback")


# --- every page ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_every_page_is_well_formed_self_contained_and_lists_every_result(kind, request):
    report = request.getfixturevalue(kind)
    parsed = strict(page.render_html(report))
    glance = parsed.text.split("Results")[0]
    assert report["status"].upper() in glance and report["host"] in glance and report["started_at"] in glance
    for result in report["results"]:
        assert result["name"] in parsed.text and ("r%d" % report["results"].index(result)) in {
            a.get("id") for _, a in parsed.attrs}
    folded = [a for tag, a in parsed.attrs if tag == "details"]
    assert len(folded) == len(report["results"])
    for attrs, result in zip(folded, report["results"]):  # a failure's evidence is open, a pass's folded
        assert ("open" in attrs) == (result["status"] in ("fail", "error")), result["name"]


def test_hostile_names_bodies_and_headers_are_text_not_markup(health):
    text = page.render_html(health)
    parsed = strict(text)
    for hostile in (HOSTILE, CLOSER, ATTRIBUTE, "<script>alert(2)</script>"):
        assert hostile in parsed.text  # shown as the characters it is made of
    assert html.escape(HOSTILE, quote=True) in text and "onerror=alert(1)>" not in text.replace("&gt;", "")
    terminal = next(r for r in health["results"] if r["name"] == "terminal")
    assert "\\x1b[2J" in parsed.text and "\\u202eevil" in parsed.text, terminal["facts"]["body"]  # as text shows it
    assert "</textarea><script>" not in text


def test_a_secret_is_masked_on_the_page_in_every_form(health):
    text = page.render_html(health)
    for form in (SECRET, html.escape(SECRET), html.escape(SECRET, quote=True), "s3cret-7781"):
        assert form not in text
    assert "***" in Page(text).text


def test_the_misses_are_named_first_with_links_to_their_evidence(health):
    parsed = strict(page.render_html(health))
    links = [a["href"] for tag, a in parsed.attrs if tag == "a"]
    statuses = [health["results"][int(link[2:])]["status"] for link in links]
    assert statuses == sorted(statuses, key=["error", "fail", "warn"].index) and len(links) == 5
    assert set(link[1:] for link in links) <= {a.get("id") for _, a in parsed.attrs}


def test_perf_draws_a_histogram_and_a_percentile_curve_with_its_thresholds(perf):
    facts = perf["results"][0]["facts"]
    parsed = strict(page.render_html(perf))
    labels = [a.get("aria-label") for tag, a in parsed.attrs if tag == "svg"]
    assert "latency histogram" in labels and "latency by percentile" in labels
    assert "p95_ms < 1" in parsed.text and "%s req/s" % facts["rps"] in parsed.text
    assert "500 ×%d" % facts["errors_by_kind"]["500"] in parsed.text and "<b>api<b>" in parsed.text
    missed = [a for tag, a in parsed.attrs if tag == "line" and "s-fail" in a.get("class", "")]
    assert len(missed) == 2  # p95_ms < 1, on the histogram and on the curve
    rows = parsed.text.split("threshold")[-1]
    assert "missed" in rows and "held" in rows  # error_rate and p95 missed; rps held


def test_threshold_labels_close_together_never_cover_each_other(perf):
    """p50 < 5, p90 < 5.5, p95 < 6 and p99 < 6.5 ms: on a log axis of 1 ms to 200 ms their lines
    are a few units apart; each label gets a place of its own, inside the picture."""
    close = json.loads(json.dumps(perf))
    result = close["results"][0]
    result["expect"] = ["p50_ms < 5", "p90_ms < 5.5", "p95_ms < 6", "p99_ms < 6.5"]
    result["facts"].update(min_ms=1.0, max_ms=200.0, histogram=[[2.0, 5], [6.0, 50], [200.0, 1]], p50_ms=4.0,
                           p90_ms=5.0, p95_ms=5.2, p99_ms=6.1, p999_ms=None)
    result["facts"].pop("p999_ms")
    html = page.render_html(close)
    strict(html)
    for picture in ("latency histogram", "latency by percentile"):
        svg = html.split('aria-label="%s"' % picture)[1].split("</svg>")[0]
        width = float(re.search(r'viewBox="0 0 (\S+) ', html.split('aria-label="%s"' % picture)[0][-300:]).group(1))
        boxes = []
        for x, y, anchor, text in re.findall(r'<text x="([\d.]+)" y="([\d.-]+)" text-anchor="(\w+)"[^>]*>(p\d+_ms &lt; [^<]+)<',
                                             svg):
            length = len(text.replace("&lt;", "<")) * page.CHAR_W
            start = float(x) - {"start": 0, "middle": length / 2, "end": length}[anchor]
            boxes.append((start, float(y) - 11, start + length, float(y), text))
            assert 0 <= start and start + length <= width and float(y) - 11 >= 0, (picture, text, x, y)
        assert len(boxes) == 4, (picture, svg)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (picture, a, b)


def test_deploy_draws_a_timeline_per_target_the_failed_one_first_and_marked(deploy):
    parsed = strict(page.render_html(deploy))
    timelines = [a["aria-label"] for tag, a in parsed.attrs if tag == "svg" and "deploy timeline" in
                 a.get("aria-label", "")]
    assert timelines == ["deploy timeline of bad", "deploy timeline of good"]
    bad = parsed.text.split("deploy bad")[1].split("deploy good")[0]
    assert "predict" in bad and "\u2715 fail" in bad and "ready" in bad
    for result in deploy["results"]:
        if result["status"] != "skip":
            assert "%s: %s" % (result["name"].split("/")[1], result["status"]) in " ".join(
                parsed.texts)  # each bar's title: phase, status, duration


def test_heartbeat_puts_the_kill_the_detection_and_the_deadline_on_one_axis(heartbeat):
    metrics = heartbeat["metrics"]["heartbeat"]
    parsed = strict(page.render_html(heartbeat))
    assert "detected %.3fs" % metrics["detection_s"] in parsed.text and "deadline 2s" in parsed.text
    assert "bound 0.6s" in parsed.text and "kill: SIGKILL to w1" in parsed.text
    assert "steady heartbeats after %ss" % metrics["steady_s"] in parsed.text
    missed = json.loads(json.dumps(heartbeat))  # the same run, as it reads when nothing was detected
    for key in ("detection_s", "event_detection_s", "expected_bound_s", "deadline_s"):
        missed["metrics"]["heartbeat"].pop(key, None)
    detect = next(r for r in missed["results"] if r["name"] == "detect")
    detect.update(status="fail", message="no failure event for w1 within the deadline of 2s", facts={})
    assert "no failure event in" in strict(page.render_html(missed)).text


def test_rollback_shows_each_trigger_against_its_threshold_the_steps_and_the_verification(rollback):
    parsed = strict(page.render_html(rollback))
    assert "rollback: rolled back, verification failed" in parsed.text
    assert "pass_rate < 0.90.5< 0.9fired" in parsed.text and "p95_ms > 500\u2014> 500no data" in parsed.text
    assert [a.get("aria-label") for tag, a in parsed.attrs if tag == "svg"].count("observed against threshold") == 1
    assert "still failing: api" in parsed.text and "find" in parsed.text and "revert" in parsed.text


# --- bounds and edges ------------------------------------------------------------------------------

def test_a_long_list_is_summarised_with_the_misses_first(health, monkeypatch):
    monkeypatch.setattr(page, "LISTED", 3)
    monkeypatch.setattr(page, "ATTENTION", 2)
    parsed = strict(page.render_html(health))
    listed = [health["results"][int(a["id"][1:])]["status"] for tag, a in parsed.attrs if tag == "details"]
    assert listed == ["fail", "fail", "fail"]  # the failures and errors first, in the report's order
    assert "and 3 more not listed: 1 error, 1 pass, 1 warn" in parsed.text
    assert "and 3 more" in parsed.text.split("Results")[0]  # of the 5 misses named at the top


def test_a_report_with_nothing_in_it_or_cut_short_still_renders(health):
    strict(page.render_html(dict(health, results=[], summary={}, metrics={}, status="error")))
    interrupted = dict(health, interrupted="SIGTERM", problems=["cleanup: <b>not</b> done"])
    parsed = strict(page.render_html(interrupted))
    assert "INTERRUPTED by SIGTERM" in parsed.text and "cleanup: <b>not</b> done" in parsed.text


def test_the_history_strips_end_with_this_run_added_once(health, workdir):
    runs, _ = state.history(str(workdir / "health-state"))
    assert len(runs) == 1 and runs[0]["time"] == health["started_at"]
    for given in (runs, []):  # the run recorded already, or not yet: one cell for it either way
        parsed = strict(page.render_html(health, given))
        cells = [a for tag, a in parsed.attrs if tag == "rect" and a.get("width") == "4.5"]
        assert len(cells) == len({r["name"] for r in health["results"]})
    older = [{"time": "2026-01-01T00:00:00.000Z", "command": "health", "status": "pass", "exit_code": 0,
              "failing": [], "passing": ["ok", "terminal"]}] * 3  # a record of the first format
    parsed = strict(page.render_html(health, older + runs))
    assert "failing 1 run, since" in parsed.text and "passing 4 runs, since 2026-01-01 00:00:00Z" in parsed.text


def test_the_page_is_imported_only_when_a_page_is_asked_for(listening_port, tmp_path):
    probe = ("import sys, runpy; sys.path.insert(0, %r)\n"
             "sys.argv = ['smoke.py', 'health', '--tcp', '127.0.0.1:%d', '--state-dir', %r]\n"
             "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('loaded:', [m for m in sys.modules if m in ('checks.page', 'checks.history')])"
             % (str(ROOT), listening_port, str(tmp_path), str(ROOT / "smoke.py")))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
    assert '"status": "pass"' in done.stdout and done.stdout.rstrip().endswith("loaded: []"), done.stdout[-300:]


# --- in a real browser -----------------------------------------------------------------------------

def chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--user-data-dir=%s" % (tmp_path / "profile")] + list(args),
                          capture_output=True, text=True, timeout=120)


@needs_chromium
@pytest.mark.parametrize("kind", KINDS)
def test_chromium_shows_each_page_and_the_hostile_markup_as_text(kind, request, tmp_path):
    report = request.getfixturevalue(kind)
    path = tmp_path / ("%s.html" % kind)
    path.write_text(page.render_html(report), encoding="utf-8")
    done = chromium(tmp_path, "--dump-dom", path.as_uri())
    dom = Page(done.stdout)  # what the browser built, serialised
    assert dom.tags["body"] == 1 and not dom.tags & Counter({"script": 1, "img": 1, "textarea": 1}), done.stderr
    assert not [a for _, a in dom.attrs if any(name.startswith("on") for name in a)]
    for result in report["results"]:
        assert result["name"] in dom.text
    if kind == "health":
        assert HOSTILE in dom.text and CLOSER in dom.text and ATTRIBUTE in dom.text


@needs_chromium
def test_chromium_takes_a_screenshot_and_prints_the_page(perf, tmp_path):
    path = tmp_path / "perf.html"
    path.write_text(page.render_html(perf), encoding="utf-8")
    shot, pdf = tmp_path / "perf.png", tmp_path / "perf.pdf"
    done = chromium(tmp_path, "--screenshot=%s" % shot, "--window-size=1200,2000", "--hide-scrollbars", path.as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr
    done = chromium(tmp_path, "--print-to-pdf=%s" % pdf, "--no-pdf-header-footer", path.as_uri())
    assert done.returncode == 0 and pdf.read_bytes()[:5] == b"%PDF-", done.stderr


def test_html_is_a_sink_of_every_run_with_the_history_strips(workdir, service, tmp_path):
    """--html FILE writes the page as --junit writes its file: beside the report, with each
    check's runs before this one; refused where any report file is."""
    state_dir = tmp_path / "state"
    page_path = tmp_path / "page.html"
    for target in ("127.0.0.1:1", "127.0.0.1:1", service.split("//")[1]):
        done = smoke("health", "--tcp", target, "--name", "db", "--state-dir", str(state_dir), "--html",
                     str(page_path), "--junit", str(tmp_path / "j.xml"))
    assert done.returncode == 0 and report_of(done)["status"] == "pass"
    parsed = strict(page_path.read_text())
    text = " ".join(parsed.texts)
    assert "passing 1 run" in text and "33% of 3" in text, text[:2000]
    for flags, said in ((["--html", str(tmp_path / "none" / "p.html")], "--html"),
                        (["--html", str(page_path), "--output", str(page_path)], "writes there too")):
        done = smoke("health", "--tcp", "127.0.0.1:1", "--state-dir", str(state_dir), *flags)
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_the_fleet_page_says_each_checks_first_miss_as_the_text_does():
    doc = {"schema": "smoke.summary/1", "status": "fail", "exit_code": 1, "paths": ["fetched"], "reports": 2,
           "counts": {"pass": 1, "warn": 0, "fail": 1, "error": 0}, "loads": [], "warnings": [],
           "hosts": [{"host": h, "status": s, "reports": [], "failing": f, "warning": [],
                      "counts": {"pass": 0, "warn": 0, "fail": len(f), "error": 0, "skip": 0}}
                     for h, s, f in (("web-3", "fail", ["api"]), ("web-1", "pass", []))],
           "checks": [{"name": "api", "section": "health", "kind": "http", "statuses": ["fail", "pass"],
                       "message": "web-3: connection refused <img src=x onerror=alert(1)>", "fail": ["web-3"],
                       "error": [], "warn": [], "pass": ["web-1"], "skip": []}]}
    parsed = strict(page.render_fleet(doc))
    assert "first miss" in parsed.text and "web-3: connection refused <img src=x onerror=alert(1)>" in parsed.text
    assert ("img", ) not in [(tag,) for tag, _ in parsed.attrs]
