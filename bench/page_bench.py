"""The HTML page of a 10 000-result report: how long it takes to render, and how big it is.

    python bench/page_bench.py [--results 10000] [--runs 200] [--repeat 3]

A real report first: smoke.py health runs `--results` file checks (one in ten of a missing
file, so they fail with their evidence). Then, in this process, page.render_html(report) and
page.render_html(report, runs) with `--runs` history records of that many checks, each the
median of `--repeat` renders; once more with every result failed and a body of 2 KB (the most
a report keeps of one) in each: the page lists the first 1000, open, and counts the rest.
Target: every render under 2 s. Exit status 1 when it is missed.
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
sys.path.insert(0, ROOT)

from checks import page, state  # noqa: E402

TARGET_S = 2.0


def real_report(workdir, results):
    config = os.path.join(workdir, "smoke.json")
    with open(config, "w") as fh:
        json.dump({"health": {"checks": [{"name": "f%d" % i, "kind": "file", "path": os.path.join(
            ROOT, "smoke.py") if i % 10 else os.path.join(workdir, "missing-%d" % i), "expect": ["exists == true"]}
            for i in range(results)]}}, fh)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "smoke.py"), "health", "--config", config,
                           "--state-dir", os.path.join(workdir, "state")], capture_output=True, text=True, timeout=600)
    return json.loads(done.stdout)


def timed(render, repeat):
    times, text = [], ""
    for _ in range(repeat):
        began = time.perf_counter()
        text = render()
        times.append(time.perf_counter() - began)
    return statistics.median(times), min(times), max(times), len(text.encode("utf-8"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        report = real_report(workdir, args.results)
    line = state.run_line(report)
    runs = [dict(line, time="2026-01-01T00:%02d:%02d.000Z" % (i // 60 % 60, i % 60)) for i in range(args.runs)]
    body = ("<p>an answer of 2 KB, as a report keeps at most</p>\n" * 50)[:2048]
    failed = dict(report, results=[dict(r, status="fail", facts=dict(r["facts"], body=body))
                                   for r in report["results"]])
    missed = False
    for label, render in (("the report", lambda: page.render_html(report)),
                          ("with %d runs of history" % args.runs, lambda: page.render_html(report, runs)),
                          ("every result failed, a 2 KB body each", lambda: page.render_html(failed))):
        median, low, high, size = timed(render, args.repeat)
        print("page: %d results, %s: %.2f s (%.2f to %.2f), %.1f MB (target < %g s)" % (
            len(report["results"]), label, median, low, high, size / 1e6, TARGET_S))
        missed = missed or median >= TARGET_S
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
