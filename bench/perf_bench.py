"""perf's load generator against its peers, every figure with its anchor measured in the same run.

    python bench/perf_bench.py [--repeats 3] [--python PATH ...]

bench/run.py calls perf_figures(missed). Each figure is measured `repeats` times and printed
as the median with its range, beside its anchor and its target; a target missed appends a name
to `missed`. Every figure is of smoke.py's own processes (the `smoke.py perf` parent and its
load workers), run as a user runs them, under each Python found of 3.8 and 3.13 (else the one
running this file):

1. throughput: req/s against nginx serving a small static body, 10 connections, closed model,
   5 s, against hey's (`hey -z 5s -c 10`) in the same repeat (target >= 1.3x); and CPU time
   per request, user + system, of the whole process tree (wait4's rusage of smoke.py, which
   holds its workers', reaped) against hey's (target <= hey's).
2. memory: a 1 000 000-request run, the whole process tree sampled from /proc every few ms.
   The target (< 40 MB) is on the tree's peak with each page counted once: at one moment, the
   sum over the processes of their anonymous memory as Pss_Anon + Pss_Shmem (a page the
   workers still share with the parent since the fork is split among them, so counted once),
   plus the largest file-backed RSS of one process (the interpreter and its libraries, mapped
   by all). Also printed: the sum of each process's own peak (VmHWM), which counts the
   interpreter shared after the fork once per process (an upper bound), and the largest
   process's peak (wait4's ru_maxrss, exact).
3. latency overhead: p50 at 1 connection against a server answering after 20 ms
   (fixtures/service.py's /latency?delay_ms=20), against wrk's p50 (target within 0.3 ms).
4. open load on a healthy server: `--rate` loads against nginx whose last request falls just
   before the end, and a schedule of hundreds per second; "not sent" errors (target 0).

Missing nginx, hey or wrk: said, and the figures that need them are not judged.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "smoke.py")
NOT_SENT = "not sent: no connection free when due"
PYTHONS = None  # the interpreters smoke.py runs under; None: 3.8 and 3.13 where found (main() sets it from --python)
SECONDS = 5  # of each throughput run
REQUESTS = 1000000  # of the memory run
SAMPLE_S = 0.004  # between two samples of the process tree's memory


def pythons():
    """[(label, path)]: Python 3.8 and 3.13 (pyenv's or on PATH), else the one running this."""
    if PYTHONS:
        found = PYTHONS
    else:
        import glob
        found = []
        for version in ("3.8", "3.13"):
            paths = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)))
            path = paths[-1] if paths else shutil.which("python" + version)
            if path:
                found.append(path)
        found = found or [sys.executable]
    labelled = []
    for path in found:
        version = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
        labelled.append(("Python " + (version or "?"), path))
    return labelled


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port, proc, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def start_nginx(workdir):
    """nginx (Debian's) answering 'hello' on 127.0.0.1, one worker process; (None, None) when missing."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None, None
    port = _free_port()
    temp = " ".join("%s_temp_path %s/%s;" % (kind, workdir, kind) for kind in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
    with open(os.path.join(workdir, "nginx.conf"), "w") as fh:
        fh.write("worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;\n"
                 "events { worker_connections 1024; }\n"
                 "http { access_log off; keepalive_requests 10000000; %s server { listen 127.0.0.1:%d; "
                 "location / { return 200 'hello'; } } }\n" % (workdir, workdir, temp, port))
    proc = subprocess.Popen([nginx, "-c", os.path.join(workdir, "nginx.conf"), "-p", workdir],
                            stderr=subprocess.DEVNULL)
    if not _wait_for_port(port, proc):
        proc.kill()
        proc.wait()
        return None, None
    return proc, port


def start_service(workdir):
    """fixtures/service.py on a free port: (process, port)."""
    ready = os.path.join(workdir, "ready")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "fixtures", "service.py"), "--port", "0",
                             "--ready-file", ready], stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(ready):
            with open(ready) as fh:
                return proc, json.load(fh)["http"]
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("fixture service did not start")


def _run(argv, workdir, watch=None):
    """Run argv to its end: (its stdout, its rusage from wait4: the process and every child it reaped).
    watch(pid), when given, is called every SAMPLE_S while it runs."""
    out_path = os.path.join(workdir, "out.txt")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
    try:
        while True:
            pid, _, usage = os.wait4(proc.pid, os.WNOHANG if watch else 0)
            if pid:
                proc.returncode = 0  # reaped here: Popen must not wait for it again
                break
            watch(proc.pid)
            time.sleep(SAMPLE_S)
    except BaseException:
        proc.kill()
        raise
    with open(out_path) as fh:
        return fh.read(), usage


def _facts(stdout):
    return json.loads(stdout)["results"][0]["facts"]


def _cpu(usage):
    return usage.ru_utime + usage.ru_stime


def ours_throughput(python, url, workdir):
    """(req/s, CPU µs per request) of `smoke.py perf`, its workers included."""
    out, usage = _run([python, SMOKE, "perf", "--url", url, "--duration", str(SECONDS), "--connections", "10"],
                      workdir)
    facts = _facts(out)
    return facts["rps"], _cpu(usage) / max(1, facts["count"]) * 1e6


def hey_throughput(url, workdir):
    """(req/s, CPU µs per request) of hey at 10 connections for SECONDS."""
    import re
    out, usage = _run(["hey", "-z", "%ds" % SECONDS, "-c", "10", url], workdir)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    answers = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    return rps, _cpu(usage) / max(1, answers) * 1e6


def _children(pid):
    found = []
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as fh:
                found += [int(child) for child in fh.read().split()]
    except OSError:
        pass
    return found


def _fields(path, names):
    values = {}
    try:
        with open(path) as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in names:
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


class TreeMemory:
    """The process tree under a pid, sampled: each process's own peak (VmHWM), and the peak of
    the tree's memory at one moment with every page counted once (see the module's docstring)."""

    def __init__(self):
        self.hwm = {}  # pid: kB
        self.once_peak = 0  # kB

    def __call__(self, root):
        anon, file_rss = 0, 0
        for pid in [root] + _children(root):
            status = _fields("/proc/%d/status" % pid, ("VmHWM", "RssFile"))
            rollup = _fields("/proc/%d/smaps_rollup" % pid, ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File"))
            if "VmHWM" not in status:  # gone meanwhile, or already a zombie
                continue
            self.hwm[pid] = max(self.hwm.get(pid, 0), status["VmHWM"])
            if "Pss_Anon" in rollup:
                anon += rollup["Pss_Anon"] + rollup.get("Pss_Shmem", 0)
            else:  # an older kernel: Pss less its file part, when it says it
                anon += rollup.get("Pss", 0) - rollup.get("Pss_File", 0)
            file_rss = max(file_rss, status.get("RssFile", 0))
        self.once_peak = max(self.once_peak, anon + file_rss)


def ours_memory(python, url, workdir):
    """(the tree's peak counted once, the sum of its processes' peaks, the largest process's peak, processes,
    requests) in MB, of a REQUESTS-request run."""
    tree = TreeMemory()
    out, _ = _run([python, SMOKE, "perf", "--url", url, "--requests", str(REQUESTS), "--connections", "10"],
                      workdir, watch=tree)
    count = _facts(out)["count"]
    # the largest process's own high-water mark, as /proc saw it: wait4's ru_maxrss of a child
    # starts at this bench's size when it forks
    return (tree.once_peak / 1024.0, sum(tree.hwm.values()) / 1024.0, max(tree.hwm.values()) / 1024.0,
            len(tree.hwm), count)


def ours_p50(python, url, workdir):
    out, _ = _run([python, SMOKE, "perf", "--url", url, "--duration", "3", "--connections", "1"], workdir)
    return _facts(out)["p50_ms"]


def wrk_p50(url):
    """wrk's p50 in ms at one connection, 3 s (wrk --latency prints its percentiles)."""
    import re
    done = subprocess.run(["wrk", "-t1", "-c1", "-d3s", "--latency", url], capture_output=True, text=True,
                          timeout=120)
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", done.stdout).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def ours_not_sent(python, url, workdir):
    """Errors of open loads on a healthy server: (not sent, every error, requests), summed over a
    schedule whose last request is due a few µs before the end, and 2000/s for 2 s."""
    not_sent = errors = count = 0
    for rate, duration in (("3", "0.66667"), ("2000", "2")):
        out, _ = _run([python, SMOKE, "perf", "--url", url, "--rate", rate, "--duration", duration,
                       "--connections", "10"], workdir)
        facts = _facts(out)
        not_sent += facts["errors_by_kind"].get(NOT_SENT, 0)
        errors += facts["errors"]
        count += facts["count"]
    return not_sent, errors, count


def _spread(values, form="%.2f"):
    """'median (range low-high)'."""
    return (form + " (range " + form + "-" + form + ")") % (statistics.median(values), min(values), max(values))


def perf_figures(missed: list, repeats: int = 3) -> None:
    """Print every perf figure with its anchor measured in the same run, `repeats` times (median and
    range), and its target; append a name to `missed` for each target missed."""
    repeats = max(1, repeats)
    interpreters = pythons()
    have_hey, have_wrk = shutil.which("hey"), shutil.which("wrk")
    with tempfile.TemporaryDirectory() as workdir:
        nginx, port = start_nginx(workdir)
        if nginx is None:
            print("perf: nginx is not installed or did not start (apt install nginx): throughput, CPU per "
                  "request, memory and the open load are not measured")
        else:
            try:
                _against_nginx("http://127.0.0.1:%d/" % port, interpreters, repeats, have_hey, workdir, missed)
            finally:
                nginx.terminate()
                nginx.wait(10)
        service, port = start_service(workdir)
        try:
            _latency("http://127.0.0.1:%d/latency?delay_ms=20" % port, interpreters, repeats, have_wrk, workdir,
                     missed)
        finally:
            service.terminate()
            service.wait(10)


def _against_nginx(url, interpreters, repeats, have_hey, workdir, missed):
    if not have_hey:
        print("perf: hey is not installed (apt install hey): req/s and CPU per request are printed, not compared")
    for label, python in interpreters:
        subprocess.run([python, SMOKE, "perf", "--url", url, "--requests", "2000"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # bytecode written, page cache warm
        ours, theirs = [], []
        for repeat in range(repeats):  # in turns, the first one alternating: drift hits both
            pair = [lambda: ours.append(ours_throughput(python, url, workdir))]
            if have_hey:
                pair.append(lambda: theirs.append(hey_throughput(url, workdir)))
            for measure in pair if repeat % 2 == 0 else pair[::-1]:
                measure()
        rps, cpu = [r for r, _ in ours], [c for _, c in ours]
        if theirs:
            ratios = [o[0] / t[0] for o, t in zip(ours, theirs)]
            cpu_ratios = [o[1] / t[1] for o, t in zip(ours, theirs)]
            print("perf throughput (%s): %s req/s at 10 connections against nginx, hey %s: ratio %s "
                  "(target >= 1.30)" % (label, _spread(rps, "%.0f"), _spread([t[0] for t in theirs], "%.0f"),
                                        _spread(ratios)))
            print("perf CPU per request (%s): %s µs, hey %s µs: ratio %s (target <= 1.00)"
                  % (label, _spread(cpu), _spread([t[1] for t in theirs]), _spread(cpu_ratios)))
            if statistics.median(ratios) < 1.3:
                missed.append("perf throughput (%s)" % label)
            if statistics.median(cpu_ratios) > 1.0:
                missed.append("perf CPU per request (%s)" % label)
        else:
            print("perf throughput (%s): %s req/s at 10 connections against nginx, CPU %s µs per request "
                  "(hey is not installed: not judged)" % (label, _spread(rps, "%.0f"), _spread(cpu)))
        runs = [ours_memory(python, url, workdir) for _ in range(repeats)]
        once, hwm, largest = [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]
        print("perf memory (%s): a %d-request run's process tree (%d processes) peaked at %s MB, each page "
              "counted once (target < 40); the sum of each process's own peak (VmHWM, the interpreter shared "
              "after the fork counted in each) %s MB; its largest process %s MB (VmHWM)"
              % (label, runs[0][4], runs[0][3], _spread(once, "%.1f"), _spread(hwm, "%.1f"),
                 _spread(largest, "%.1f")))
        if statistics.median(once) >= 40:
            missed.append("perf memory (%s)" % label)
        opened = [ours_not_sent(python, url, workdir) for _ in range(repeats)]
        print("perf open load on a healthy server (%s): %s \"not sent\" and %s errors in all of %d requests "
              "per repeat (target 0)" % (label, _spread([o[0] for o in opened], "%d"),
                                         _spread([o[1] for o in opened], "%d"), opened[0][2]))
        if any(o[0] for o in opened):
            missed.append("perf open load not sent (%s)" % label)


def _latency(url, interpreters, repeats, have_wrk, workdir, missed):
    if not have_wrk:
        print("perf: wrk is not installed (apt install wrk): p50 at a 20 ms server is printed, not compared")
    for label, python in interpreters:
        ours, apart = [], []
        for repeat in range(repeats):
            p50 = ours_p50(python, url, workdir)
            ours.append(p50)
            if have_wrk:
                apart.append(p50 - wrk_p50(url))
        if apart:
            print("perf latency overhead (%s): p50 %s ms at 1 connection against a 20 ms server, wrk's %s ms: "
                  "%s ms apart (target within 0.30)" % (label, _spread(ours), _spread([o - a for o, a in
                                                                                       zip(ours, apart)]),
                                                        _spread(apart)))
            if abs(statistics.median(apart)) > 0.3:
                missed.append("perf latency overhead (%s)" % label)
        else:
            print("perf latency (%s): p50 %s ms at 1 connection against a 20 ms server (wrk is not installed: "
                  "not judged)" % (label, _spread(ours)))


def main():
    import argparse
    global PYTHONS
    parser = argparse.ArgumentParser(description="perf's load generator against hey and wrk (see the docstring)")
    parser.add_argument("--repeats", type=int, default=3, help="of each figure (median and range printed)")
    parser.add_argument("--python", action="append", default=[], metavar="PATH",
                        help="run smoke.py under this interpreter (repeatable; default: 3.8 and 3.13)")
    args = parser.parse_args()
    PYTHONS = args.python or None
    missed = []
    perf_figures(missed, args.repeats)
    print("missed: %s" % ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
