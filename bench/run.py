"""Benchmarks behind the performance claims, measured in one run and printed as ratios.

    python bench/run.py [--runs 15]

1. start-up: `smoke.py --help` against `python -c "import argparse"` (target <= 1.3x),
   and which slow modules a `health --tcp` run imports (target: neither ssl nor http.client).
2. fan-out: 200 HTTP checks against a server answering after 100 ms, --concurrency 50,
   against the ideal 4 x 100 ms (target <= 1.3x; start-up excluded: the report's duration_ms).
3. footprint: peak RSS of that run (target < 30 MB).
Exit status 1 when a target is missed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "smoke.py")
PY = sys.executable


def median_seconds(argv, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup(runs):
    base = median_seconds([PY, "-c", "import argparse"], runs)
    ours = median_seconds([PY, SMOKE, "--help"], runs)
    return base, ours


def tcp_imports(address):
    """Top-level modules a `health --tcp` run imports, from -X importtime."""
    done = subprocess.run([PY, "-X", "importtime", SMOKE, "health", "--tcp", address, "--quiet"],
                          capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return sorted(names & {"ssl", "http.client", "asyncio", "concurrent.futures", "xml"})


def start_service(workdir):
    ready = os.path.join(workdir, "ready")
    proc = subprocess.Popen([PY, os.path.join(ROOT, "fixtures", "service.py"), "--port", "0",
                             "--ready-file", ready], stdout=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(ready):
            with open(ready) as fh:
                return proc, json.load(fh)["http"]
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("fixture service did not start")


def fan_out(port, workdir, checks=200, concurrency=50, delay_ms=100):
    """Run the fan-out; returns (duration_ms from the report, peak RSS in MB of smoke.py)."""
    config = os.path.join(workdir, "fanout.json")
    table = [{"name": "c%d" % i, "kind": "http", "url": "http://127.0.0.1:%d/delay/%d" % (port, delay_ms)}
             for i in range(checks)]
    with open(config, "w") as fh:
        json.dump({"health": {"checks": table}}, fh)
    out_path = os.path.join(workdir, "report.json")
    proc = subprocess.Popen([PY, SMOKE, "health", "--config", config, "--concurrency", str(concurrency),
                             "--output", out_path, "--quiet"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    with open(out_path) as fh:
        report = json.load(fh)
    if report["summary"]["pass"] != checks:
        raise SystemExit("fan-out: only %d of %d checks passed" % (report["summary"]["pass"], checks))
    return report["duration_ms"], usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description="smoke.py benchmarks (ratios measured in one run)")
    parser.add_argument("--runs", type=int, default=15, help="start-up samples per command (median)")
    args = parser.parse_args()
    missed = []

    base, ours = startup(args.runs)
    ratio = ours / base
    print("start-up: smoke.py --help %.1f ms, import argparse %.1f ms: ratio %.2f (target <= 1.30)"
          % (ours * 1000, base * 1000, ratio))
    if ratio > 1.3:
        missed.append("start-up")

    with tempfile.TemporaryDirectory() as workdir:
        service, port = start_service(workdir)
        try:
            slow = tcp_imports("127.0.0.1:%d" % port)
            print("tcp run imports: %s (target: none of ssl, http.client)" % (", ".join(slow) or "none of them"))
            if slow:
                missed.append("tcp imports")
            fan_out(port, workdir, checks=10)  # warm the page cache and the server
            duration_ms, rss_mb = fan_out(port, workdir)
        finally:
            service.terminate()
            service.wait(10)
    ideal = 4 * 100.0
    print("fan-out: 200 checks x 100 ms at concurrency 50 in %.0f ms, ideal %.0f ms: ratio %.2f (target <= 1.30)"
          % (duration_ms, ideal, duration_ms / ideal))
    print("footprint: peak RSS %.1f MB (target < 30)" % rss_mb)
    if duration_ms / ideal > 1.3:
        missed.append("fan-out")
    if rss_mb >= 30:
        missed.append("footprint")
    print("missed: %s" % ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
