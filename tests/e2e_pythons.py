"""End-to-end CLI scenario under every CPython 3.8-3.13 found on this machine.

Run by `make test` after pytest. For each version it starts the fixture service with
that interpreter, runs smoke.py as a user would, and checks exit codes and the report.
Versions not installed are named as skipped; any failure exits 1.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "smoke.py")
VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def find_python(version):
    """pythonX.Y on PATH (not a pyenv shim, which adds start-up time), else pyenv's newest X.Y."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)),
                        key=lambda p: [int(x) for x in p.split("/versions/")[1].split("/")[0].split(".")
                                       if x.isdigit()])
    if candidates:
        return candidates[-1]
    found = shutil.which("python" + version)
    return found if found and "shims" not in found else None


def start_service(python, workdir):
    ready = os.path.join(workdir, "ready")
    proc = subprocess.Popen([python, os.path.join(ROOT, "fixtures", "service.py"), "--port", "0",
                             "--ready-file", ready], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ready):
            with open(ready) as fh:
                return proc, "http://127.0.0.1:%d" % json.load(fh)["http"]
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fixture service did not start")


def scenario(python, workdir, program=SMOKE):
    """Problems found, as lines; empty when all is well. program: smoke.py, or the bundle."""
    problems = []

    def smoke(python, *args):
        return subprocess.run([python, program] + list(args), capture_output=True, text=True, timeout=60, cwd=ROOT)

    def expect_code(done, code, what):
        if done.returncode != code:
            problems.append("%s: exit %d, expected %d: %s" % (what, done.returncode, code,
                                                              done.stderr.strip()[-300:]))
        return done

    for args in (["--help"], ["--version"], ["health", "--help"]):
        expect_code(smoke(python, *args), 0, " ".join(args))
    service, url = start_service(python, workdir)
    try:
        config = os.path.join(workdir, "smoke.json")
        with open(config, "w") as fh:
            json.dump({"health": {"checks": [
                {"name": "up", "kind": "http", "url": url + "/health", "expect": ["json.status == healthy"]},
                {"name": "version", "kind": "http", "url": url + "/api/health", "expect": ["json.version >= 12.1"]},
                {"name": "port", "kind": "tcp", "address": url.split("//")[1]},
                {"name": "interpreter", "kind": "command", "command": [python, "--version"],
                 "expect": ["version >= 3.8"]},
                {"name": "flags", "kind": "file", "path": os.path.join(ROOT, "fixtures", "flags.json"),
                 "expect": ["json.flags.orchestration_enabled == true"]},
            ]}}, fh)
        done = expect_code(smoke(python, "all", "--config", config, "--output", os.path.join(workdir, "r.json")),
                           0, "all --config")
        if done.returncode == 0 and json.loads(done.stdout)["summary"]["pass"] != 5:
            problems.append("all --config: expected 5 passes")
        done = expect_code(smoke(python, "health", "--url", url + "/fault/500", "--format", "text"), 1, "failing url")
        if "status: expected < 400, got 500" not in done.stdout:
            problems.append("failing url: no evidence in the text report")
        expect_code(smoke(python, "health", "--url", url + "/fault/hang", "--timeout", "0.5"), 1, "hanging url")
        started = time.monotonic()
        done = expect_code(smoke(python, "health", "--url", url + "/hostile/backtrack", "--expect",
                                 "body matches (a+)+$", "--timeout", "1"), 3, "catastrophic regex")
        if time.monotonic() - started > 6:
            problems.append("catastrophic regex: took %.1f s, past its 1 s timeout" % (time.monotonic() - started))
        done = expect_code(smoke(python, "health", "--url", url + "/hostile/surrogate", "--expect", "json exists"),
                           0, "lone surrogate")
        try:
            done.stdout.encode("utf-8")
            json.loads(done.stdout, parse_constant=lambda c: 1 / 0)
        except (ValueError, ZeroDivisionError, UnicodeError) as exc:
            problems.append("lone surrogate: the report is not strict JSON: %s" % exc)
        done = subprocess.run("%s %s health --url %s/fault/500 2>&- >/dev/full" % (python, program, url), shell=True,
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        expect_code(done, 1, "closed stderr, full stdout")
        hung = subprocess.Popen([python, program, "health", "--url", url + "/fault/hang", "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(1.5)
        hung.send_signal(signal.SIGHUP)
        out, err = hung.communicate(timeout=15)
        if hung.returncode != 129 or json.loads(out or "{}").get("interrupted") != "SIGHUP":
            problems.append("SIGHUP: exit %s, expected 129 with a partial report: %s" % (hung.returncode, err[-300:]))
        bad = os.path.join(workdir, "bad.json")
        with open(bad, "w") as fh:
            fh.write('{"health": {"checks": [{"kind": "http", "url": "x", "expect": ["status =~ 1"]}]}}')
        done = expect_code(smoke(python, "health", "--validate", "--config", bad), 2, "bad config")
        if "Traceback" in done.stderr or done.stderr.count("\n") != 1:
            problems.append("bad config: not a one-line error: %r" % done.stderr)
    finally:
        service.terminate()
        service.wait(10)
    return problems


def main():
    failed, skipped = [], []
    with tempfile.TemporaryDirectory() as dist:
        bundle = os.path.join(dist, "smoke.py")  # the single file (make bundle), held to the same scenario
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bundle.py"), "--output", bundle], check=True,
                       stdout=subprocess.DEVNULL)
        for version in VERSIONS:
            python = find_python(version)
            if not python:
                skipped.append(version)
                print("e2e: python%s skipped: not installed" % version)
                continue
            # the bundle on the oldest and newest: tests/test_bundle.py runs it on every one
            programs = [(SMOKE, "smoke.py")] + ([(bundle, "the bundle")] if version in (VERSIONS[0], VERSIONS[-1])
                                                 else [])
            for program, what in programs:
                with tempfile.TemporaryDirectory() as workdir:
                    started = time.monotonic()
                    problems = scenario(python, workdir, program)
                label = "e2e: python%s (%s), %s" % (version, python, what)
                if problems:
                    failed.append("%s %s" % (version, what))
                    print("%s FAILED:\n  %s" % (label, "\n  ".join(problems)))
                else:
                    print("%s ok in %.1f s" % (label, time.monotonic() - started))
    ran = len(VERSIONS) - len(skipped) + len([v for v in (VERSIONS[0], VERSIONS[-1]) if v not in skipped])
    print("e2e: %d passed, %d failed, %d skipped (%s)" % (
        ran - len(failed), len(failed), len(skipped), ", ".join(skipped) or "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
