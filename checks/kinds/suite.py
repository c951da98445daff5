"""suite: run an existing test suite that writes JUnit XML; each testcase becomes a result.

    {"name": "smoke", "kind": "suite", "command": ["pytest", "-m", "critical", "--junitxml", "{junit}"],
     "timeout": 300}

{junit} in the command is a file in a directory of the run's own, removed after. Every
<testcase> is folded into the report as a result named NAME/CLASSNAME.TEST (pass, fail for
<failure>, error for <error>, skip for <skipped>), so --min-pass-rate 0.95 reads "21 of 25
smoke tests passed". The command's exit code decides nothing by itself (pytest exits 1 when
a test failed, which the testcases say); a suite that wrote no JUnit, or a file that is not
JUnit, is one error, and one with no testcase a fail (tests > 0). Facts (of the suite as a
whole): exit_code, tests, failures, errors, skipped, stdout, stderr.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks import CheckError, ConfigError
from checks.kinds import command

NAME = "suite"
DEFAULT_EXPECT = ("tests > 0",)  # an empty suite is no pass; the testcases judge themselves
MAX_JUNIT = 64 << 20  # bytes of JUnit XML read
MAX_CASES = 100000
_MESSAGE = 300  # characters of a failure's message in a result's one line


def load(fields) -> Dict[str, Any]:
    params = command.load(fields)
    words = params["command"] if isinstance(params["command"], list) else [params["command"]]
    if not any("{junit}" in word for word in words):
        raise ConfigError("%s: say where the suite writes its JUnit XML with {junit}, e.g. pytest --junitxml "
                          "{junit}" % fields.at("command"))
    return params


def target(params) -> str:
    return command.target(params)


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="smoke-suite-")
    if ctx.cleanup is not None:
        ctx.cleanup.add(lambda: shutil.rmtree(directory, ignore_errors=True), "suite directory " + directory)
    junit = os.path.join(directory, "junit.xml")
    given = params["command"]
    argv = [word.replace("{junit}", junit) for word in given] if isinstance(given, list) else \
        given.replace("{junit}", junit)
    try:
        facts = command.probe(dict(params, command=argv), timeout, ctx)
        if "error" in facts:
            return facts
        cases = read_junit(junit)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    counts = {status: sum(case["status"] == status for case in cases) for status in ("fail", "error", "skip")}
    return dict(facts, tests=len(cases), failures=counts["fail"], errors=counts["error"], skipped=counts["skip"],
                testcases=cases)


def read_junit(path: str) -> List[Dict[str, Any]]:
    """The testcases of a JUnit XML file (any of the dialects pytest, go-junit-report,
    gotestsum, cargo nextest and Maven write); CheckError when there is none to read."""
    from xml.etree import ElementTree

    from checks.probes.proc import read_small

    try:
        data = read_small(path, MAX_JUNIT + 1, "the suite's JUnit XML ")
    except CheckError as exc:
        raise CheckError("%s: did the command write it to {junit}?" % exc)
    if len(data) > MAX_JUNIT:
        raise CheckError("the suite's JUnit XML is larger than %d MB" % (MAX_JUNIT >> 20))
    if b"<!ENTITY" in data:  # entity expansion is how a small file becomes gigabytes
        raise CheckError("the suite's JUnit XML declares entities: not read")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise CheckError("the suite's JUnit XML is not XML: %s" % exc)
    if root.tag not in ("testsuites", "testsuite"):
        raise CheckError("the suite's file is not JUnit XML (its root is <%s>)" % root.tag[:40])
    cases = []
    for case in root.iter("testcase"):
        if len(cases) >= MAX_CASES:
            raise CheckError("the suite has more than %d testcases" % MAX_CASES)
        status, message, detail = "pass", "", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "fail", "error": "error", "skipped": "skip"}[child.tag]
                detail = (child.text or "").strip()
                message = (child.get("message") or detail or child.tag).strip().split("\n", 1)[0]
                break
        try:
            seconds = max(0.0, float(case.get("time") or 0))
        except ValueError:
            seconds = 0.0
        cases.append({"name": case.get("name") or "?", "classname": case.get("classname") or "",
                      "status": status, "message": message[:_MESSAGE], "detail": detail[:2000],
                      "seconds": seconds, "file": case.get("file")})
    return cases


def fold(check, result, facts: Dict[str, Any]) -> list:
    """The suite's result as one result per testcase (its own when it has none to give)."""
    from checks.model import Result

    cases = facts.get("testcases")
    if not cases or result.status == "error":
        return [result]
    folded = []  # names made unique by the section's run (health.run): a name picks a result and a series
    for case in cases:
        name = "%s/%s" % (check.name, "%s.%s" % (case["classname"], case["name"]) if case["classname"]
                          else case["name"])
        evidence = {key: case[key] for key in ("classname", "file", "detail") if case.get(key)}
        folded.append(Result(name, check.section, NAME, case["status"], case["message"], case["seconds"] * 1000,
                             1, check.tags, check.severity, evidence, target=check.target))
    return folded
