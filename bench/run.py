"""Benchmarks behind the performance claims, measured in one run and printed as ratios: each
figure beside its anchor measured in the same run, each ratio repeated (median and range).

    python bench/run.py [--repeats 3] [--only NAME,...]

On each of Python 3.8 and 3.13 (pyenv's, else pythonX.Y on PATH, else this one):

- startup: `smoke.py --help` against `python -c "import argparse"` (target <= 1.30);
  `health --tcp` against `python -c "import argparse, socket, json, threading"` and
  `health --url` against the same plus http.client (targets <= 1.25: the one-check-per-
  process case of cron and Nagios); which slow modules a tcp run imports (none of ssl,
  http.client).
- history: a one-check run with a 50 MB history against one with none, in time and peak
  memory (targets <= 1.05).
- scale: 10,000 `file` checks, the whole process (target <= 1 s) and against
  bench/pool_reference.py doing the same (target <= 2x); 10,000 `tcp` checks against it
  (target <= 1.5x).
- heartbeat: the observation lag, a failure line written -> smoke.py has seen it (target
  <= 5 ms median).

Once: fan-out (200 checks x 100 ms at concurrency 50 against the ideal 400 ms, <= 1.3x) and
its footprint (< 30 MB); deploy's ready-detection lag and per-phase overhead; perf against
hey, wrk and nginx (bench/perf_bench.py); the single file against the source tree
(bench/bundle_bench.py); the page of 10,000 results (bench/page_bench.py).

Start-up ratios are instruction counts (valgrind's callgrind: repeatable on a noisy machine)
where valgrind is installed, else wall-time medians of commands timed in turns. Bytecode is
written by a warm-up run first, as an installed copy has it. Exit status 1 when a target is
missed.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "smoke.py")
PY = sys.executable
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
WARM_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
VALGRIND = shutil.which("valgrind")


def pythons():
    """[(label, path)] of Python 3.8 and 3.13, as perf_bench finds them."""
    from perf_bench import pythons as found
    return found()


def spread(values, form="%.2f"):
    """'median (range low-high)'."""
    return (form + " (range " + form + "-" + form + ")") % (statistics.median(values), min(values), max(values))


def instructions(argv, env=None):
    """Instructions the command executes (callgrind): repeatable where wall time is noisy."""
    done = subprocess.run([VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or WARM_ENV)
    found = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(found[-1].split(":")[-1]) if found else None


def wall(argv, env=None):
    """Seconds one run of argv takes."""
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or WARM_ENV)
    return time.perf_counter() - started


# Started by a small process: a child's ru_maxrss starts at its parent's resident size when it
# forks, and this bench grows past 100 MB (the 50 MB history it writes), which every child
# measured straight from here would report as its own peak.
_LAUNCH = ("import os, sys\npid = os.fork()\nif not pid:\n    os.execv(sys.argv[2], sys.argv[2:])\n"
           "_, status, usage = os.wait4(pid, 0)\nopen(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
           "sys.exit(status >> 8)")


def peak_mb(argv, env=None, **popen):
    """The peak RSS (MB) of one run of argv, forked from a fresh Python (about 10 MB: the floor)."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run([PY, "-c", _LAUNCH, out.name] + list(argv), env=env or WARM_ENV,
                       **dict({"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}, **popen))
        return int(out.read() or 0) / 1024.0


def ratios(base_argv, our_argv, repeats):
    """[our / base] `repeats` times: instruction counts with valgrind, else wall time (in turns)."""
    for argv in (base_argv, our_argv):  # warm-up: writes bytecode, fills the page cache
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=WARM_ENV)
    found = []
    for _ in range(repeats):
        if VALGRIND:
            base, ours = instructions(base_argv), instructions(our_argv)
        else:
            base, ours = wall(base_argv), wall(our_argv)
        if base and ours:
            found.append(ours / base)
    return found


def judged(name, values, target, missed, higher_is_worse=True, form="%.2f"):
    """Print a figure's median and range with its target; note it when the median misses."""
    if not values:
        print("%s: not measured" % name)
        return
    median = statistics.median(values)
    print("%s: %s (target %s %s)" % (name, spread(values, form), "<=" if higher_is_worse else ">=", form % target))
    if (median > target) if higher_is_worse else (median < target):
        missed.append(name)


def startup(missed, repeats, port, workdir):
    state = ["--state-dir", os.path.join(workdir, "state")]
    unit = "instructions" if VALGRIND else "wall time"
    for label, python in pythons():
        judged("start-up %s: smoke.py --help against python -c 'import argparse' (%s)" % (label, unit),
               ratios([python, "-c", "import argparse"], [python, SMOKE, "--help"], repeats), 1.30, missed)
        imports = "import argparse, socket, json, threading"
        for what, extra, run in (("tcp", "", ["--tcp", "127.0.0.1:%d" % port]),
                                 ("url", ", http.client", ["--url", "http://127.0.0.1:%d/health" % port])):
            judged("start-up %s: health --%s against python -c '%s%s' (%s)" % (label, what, imports, extra, unit),
                   ratios([python, "-c", imports + extra], [python, SMOKE, "health"] + run + state, repeats),
                   1.25, missed)
        done = subprocess.run([python, "-X", "importtime", SMOKE, "health", "--tcp", "127.0.0.1:%d" % port] + state,
                              capture_output=True, text=True, env=WARM_ENV)
        names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        slow = sorted(names & {"ssl", "http.client", "asyncio", "concurrent.futures", "xml", "subprocess"})
        print("start-up %s: a tcp run imports %s (target: none of ssl, http.client, subprocess)"
              % (label, ", ".join(slow) or "none of the slow modules"))
        if slow:
            missed.append("tcp imports (%s)" % label)


def history_cost(missed, repeats, port, workdir):
    """A one-check run with a 50 MB history against one with none: time and peak memory."""
    line = json.dumps({"time": "2026-01-01T00:00:00.000Z", "command": "health", "status": "pass", "exit_code": 0,
                       "duration_ms": 1.0, "failing": [], "passing": ["tcp 127.0.0.1:%d" % port],
                       "selection": None}) + "\n"
    empty, big = os.path.join(workdir, "empty"), os.path.join(workdir, "big")
    for path in (empty, big):
        os.makedirs(path, mode=0o700)
    with open(os.path.join(big, "history.jsonl"), "w") as fh:
        fh.write(line * (50 * 1024 * 1024 // len(line)))
    for label, python in pythons():
        argv = [python, SMOKE, "health", "--tcp", "127.0.0.1:%d" % port, "--state-dir"]
        times, memory = [], []
        for argv_of in (argv + [empty], argv + [big]):
            wall(argv_of)  # bytecode written
        for _ in range(max(3, repeats)):
            times.append(wall(argv + [big]) / wall(argv + [empty]))
            memory.append(peak_mb(argv + [big]) / peak_mb(argv + [empty]))
        judged("history %s: a one-check run with a 50 MB history against none, time" % label, times, 1.05, missed)
        judged("history %s: the same, peak memory" % label, memory, 1.05, missed)


def _listener():
    """A port on 127.0.0.1 whose backlog takes 10,000 connects at once, each accepted and closed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4096)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return server


def scale(missed, repeats, workdir, checks=10000):
    server = _listener()
    try:
        configs = {}
        for kind, table in (("file", lambda i: {"name": "f%d" % i, "kind": "file", "path": SMOKE}),
                            ("tcp", lambda i: {"name": "t%d" % i, "kind": "tcp",
                                               "address": "127.0.0.1:%d" % server.getsockname()[1]})):
            configs[kind] = os.path.join(workdir, "scale-%s.json" % kind)
            with open(configs[kind], "w") as fh:
                json.dump({"health": {"checks": [table(i) for i in range(checks)]}}, fh)
        reference = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pool_reference.py")
        for label, python in pythons():
            for kind, target in (("file", 2.0), ("tcp", 1.5)):
                ours = [python, SMOKE, "health", "--config", configs[kind], "--quiet", "--state-dir",
                        os.path.join(workdir, "state"), "--output", os.path.join(workdir, "report.json")]
                theirs = [python, reference, configs[kind], os.path.join(workdir, "reference.json")]
                wall(ours), wall(theirs)  # bytecode written, page cache warm
                seconds, against = [], []
                for repeat in range(repeats):  # in turns, the first one alternating: drift hits both
                    if repeat % 2:
                        theirs_s, ours_s = wall(theirs), wall(ours)
                    else:
                        ours_s, theirs_s = wall(ours), wall(theirs)
                    seconds.append(ours_s)
                    against.append(ours_s / theirs_s)
                if kind == "file":
                    judged("scale %s: 10,000 file checks, the whole process, seconds" % label, seconds, 1.0, missed)
                judged("scale %s: 10,000 %s checks against bench/pool_reference.py" % (label, kind), against,
                       target, missed)
    finally:
        server.close()


def fan_out(port, workdir, checks=200, concurrency=50, delay_ms=100):
    """Run the fan-out; returns (duration_ms from the report, peak RSS in MB of smoke.py)."""
    config = os.path.join(workdir, "fanout.json")
    table = [{"name": "c%d" % i, "kind": "http", "url": "http://127.0.0.1:%d/delay/%d" % (port, delay_ms)}
             for i in range(checks)]
    with open(config, "w") as fh:
        json.dump({"health": {"checks": table}}, fh)
    out_path = os.path.join(workdir, "report.json")
    peak = peak_mb([PY, SMOKE, "health", "--config", config, "--concurrency", str(concurrency), "--output", out_path,
                    "--quiet"])
    with open(out_path) as fh:
        report = json.load(fh)
    if report["summary"]["pass"] != checks:
        raise SystemExit("fan-out: only %d of %d checks passed" % (report["summary"]["pass"], checks))
    return report["duration_ms"], peak


def deploy_timings(workdir, build_s=1.0, interval=0.1):
    """(ready-detection lag in ms, median overhead per phase in ms) of one deploy run."""
    sys.path.insert(0, ROOT)
    from fixtures import model_server

    server, url = model_server.serve_in_thread()
    try:
        section = {
            "deploy": {"kind": "http", "method": "POST", "url": url + "/v1/models",
                       "json": {"name": "{name}", "build_s": build_s}, "capture": {"model_id": "json.id"}},
            "ready": {"kind": "http", "url": url + "/v1/models/{model_id}", "until": ["json.status == ready"],
                      "interval": interval, "timeout": 30},
            "predict": {"kind": "http", "method": "POST", "url": url + "/v1/models/{model_id}/predict",
                        "json": {"prompt": "hi", "seed": 1}},
            "logs": {"kind": "http", "url": url + "/v1/models/{model_id}/logs", "lines": ["Build succeeded"]},
            "cleanup": {"kind": "http", "method": "DELETE", "url": url + "/v1/models/{model_id}"}}
        config = os.path.join(workdir, "deploy.json")
        with open(config, "w") as fh:
            json.dump({"deploy": section}, fh)
        done = subprocess.run([PY, SMOKE, "deploy", "--config", config], capture_output=True, text=True, check=True)
        results = {r["name"]: r for r in json.loads(done.stdout)["results"]}
    finally:
        server.shutdown()
        server.server_close()
    # The model turns ready build_s after its creation, which the deploy phase's request made.
    lag = results["deploy"]["duration_ms"] + results["ready"]["duration_ms"] - build_s * 1000
    overheads = [results[name]["duration_ms"] - results[name]["facts"]["latency_ms"]
                 for name in ("deploy", "predict", "cleanup")]
    return lag, statistics.median(overheads)


VICTIM = """
import random, signal, sys, time
def down(*_):
    time.sleep(random.uniform(0.05, 0.3))  # a detector takes a while: the line comes at any moment of a poll
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % (now % 1 * 1e6)
    with open(sys.argv[1], "a") as fh:
        fh.write(stamp + " worker bench failed\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, down)
open(sys.argv[1] + ".ready", "w").close()
time.sleep(60)
"""


def heartbeat_lag(workdir, runs=15):
    """The tool's observation lag: a failure line written (its own timestamp) -> heartbeat has
    seen it. The victim writes the line itself when our SIGTERM reaches it. (median, max) ms."""
    lags = []
    for i in range(runs):
        log = os.path.join(workdir, "events-%d.log" % i)
        open(log, "w").close()
        victim = subprocess.Popen([PY, "-c", VICTIM, log])
        while not os.path.exists(log + ".ready"):
            time.sleep(0.01)
        done = subprocess.run([PY, SMOKE, "heartbeat", "--pid", str(victim.pid), "--log", log, "--signal", "SIGTERM",
                               "--failure-pattern", r"worker (?P<worker>\S+) failed", "--expect-worker", "bench",
                               "--grace", "0", "--deadline", "5"], capture_output=True, text=True, timeout=60)
        victim.wait(10)
        metrics = json.loads(done.stdout)["metrics"]["heartbeat"]
        lags.append((metrics["detection_s"] - metrics["event_detection_s"]) * 1000)
    lags.sort()
    return lags[len(lags) // 2], lags[-1]


def main():
    parser = argparse.ArgumentParser(description="smoke.py benchmarks (ratios measured in one run)")
    parser.add_argument("--repeats", type=int, default=3, help="samples of each ratio (median and range)")
    parser.add_argument("--only", default="", help="comma-separated: startup, history, scale, fanout, deploy, "
                                                   "heartbeat, perf, bundle, page (default: all)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))

    def wanted(name):
        return not only or name in only
    missed = []
    with tempfile.TemporaryDirectory() as workdir:
        from perf_bench import start_service
        service, port = start_service(workdir)
        try:
            if wanted("startup"):
                startup(missed, args.repeats, port, workdir)
            if wanted("history"):
                history_cost(missed, args.repeats, port, workdir)
            if wanted("fanout"):
                fan_out(port, workdir, checks=10)  # warm the page cache and the server
                runs = sorted(fan_out(port, workdir) for _ in range(3))  # the median run: one is at noise's mercy
                duration_ms, rss_mb = runs[1]
                print("fan-out: 200 checks x 100 ms at concurrency 50 in %.0f ms, ideal 400 ms: ratio %.2f "
                      "(target <= 1.30)" % (duration_ms, duration_ms / 400.0))
                print("footprint: peak RSS %.1f MB (target < 30)" % rss_mb)
                if duration_ms / 400.0 > 1.3:
                    missed.append("fan-out")
                if rss_mb >= 30:
                    missed.append("footprint")
        finally:
            service.terminate()
            service.wait(10)
        if wanted("scale"):
            scale(missed, args.repeats, workdir)
        if wanted("deploy"):
            lag, overhead = deploy_timings(workdir)
            print("deploy: ready detected %.1f ms after the model turned ready (target <= 120, the interval + 20)"
                  % lag)
            print("deploy: %.2f ms per phase beyond the request itself (target < 5)" % overhead)
            if lag > 120:
                missed.append("ready lag")
            if overhead >= 5:
                missed.append("phase overhead")
        if wanted("heartbeat"):
            lags = [heartbeat_lag(workdir, runs=9)[0] for _ in range(args.repeats)]
            judged("heartbeat: a failure line seen after it was written, ms (median of 9 kills, each repeat)",
                   lags, 5.0, missed, form="%.1f")
    if wanted("perf"):
        from perf_bench import perf_figures
        perf_figures(missed, args.repeats)
    if wanted("bundle"):
        from bundle_bench import bundle_figures
        bundle_figures(missed, args.repeats)
    if wanted("page"):
        import page_bench
        if page_bench.main(["--repeat", str(args.repeats)]):
            missed.append("page render")
    print("missed: %s" % ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
