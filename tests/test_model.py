"""checks/model.py: the verdict, the summary and the report. In-process on Result values, and through a
real smoke.py whose facts come from the fixture service's /hostile/ answers: any bytes must serialise.
"""

import json

import pytest

from checks.model import ExitCode, Result, summarize, verdict
from conftest import smoke, strict_json


# --- the verdict and the summary -------------------------------------------------------------

def r(status, severity="normal"):
    return Result("n", "health", "http", status, severity=severity)


@pytest.mark.parametrize("statuses, min_rate, expected", [
    (["pass", "pass"], 1.0, ("pass", 0)),
    (["pass", "fail"], 1.0, ("fail", 1)),
    (["pass", "fail"], 0.5, ("pass", 0)),
    (["pass", "pass", "pass", "fail"], 0.8, ("fail", 1)),
    (["pass", "error"], 1.0, ("error", 3)),  # nothing failed: we could not check one (issue 5, rule 5)
    (["pass", "error", "fail"], 1.0, ("fail", 1)),
    (["pass", "pass", "error"], 0.5, ("pass", 0)),
    (["error", "error"], 0.0, ("error", 3)),  # only errors is never a pass, whatever the rate
    (["pass", "pass", "fail", "error"], 0.5, ("pass", 0)),
    (["pass", "pass", "fail", "error"], 0.6, ("error", 3)),  # the failure alone is within the rate
    (["error", "error", "skip"], 1.0, ("error", 3)),
    (["skip"], 1.0, ("error", 3)),          # no evaluated results is never a pass
    ([], 1.0, ("error", 3)),
    (["pass", "skip", "warn"], 1.0, ("warn", 0)),
])
def test_verdict_and_exit_code(statuses, min_rate, expected):
    status, code = verdict([r(s) for s in statuses], min_rate)
    assert (status, int(code)) == expected


def test_a_critical_check_must_pass_whatever_the_rate():
    results = [r("pass")] * 99 + [r("fail", "critical")]
    assert verdict(results, min_pass_rate=0.5) == ("fail", ExitCode.FAIL)
    # A critical check we could not evaluate misses the verdict too, but says nothing is broken.
    results = [r("pass"), r("pass"), r("fail"), r("error", "critical")]
    assert verdict(results, min_pass_rate=0.5) == ("error", ExitCode.UNKNOWN)


def test_summary_counts_and_pass_rate():
    summary = summarize([r("pass"), r("fail"), r("warn"), r("skip"), r("error")])
    assert summary == {"total": 5, "pass": 1, "warn": 1, "fail": 1, "error": 1, "skip": 1, "pass_rate": 0.5}


# --- the report: any facts serialise to strict JSON ------------------------------------------

@pytest.mark.parametrize("path", ["/hostile/surrogate", "/hostile/deep", "/hostile/deep?depth=900",
                                  "/hostile/bad-bytes"])
def test_any_bytes_end_as_facts_the_report_can_serialise(service, tmp_path, path):
    out = tmp_path / "report.json"
    done = smoke("health", "--url", service + path, "--expect", "json exists", "--output", str(out))
    for text in (done.stdout, out.read_text(encoding="utf-8")):
        report = strict_json(text)
    assert done.returncode == report["exit_code"] and "Traceback" not in done.stderr
    facts = report["results"][0]["facts"]
    if path == "/hostile/surrogate":
        assert facts["json"] == {"text": "\ufffd", "ratio": "NaN", "status": "healthy"}
    if path == "/hostile/deep":  # CPython before 3.13 cannot parse it; 3.13 can, and the report cuts it
        assert (facts.get("json_error") == "body is not valid JSON: nested too deeply to parse"
                or "nested deeper than 32 levels" in json.dumps(facts["json"]))
