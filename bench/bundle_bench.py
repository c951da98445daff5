"""The single file's start-up against the source tree's, on Python 3.8 and 3.13.

    python bench/bundle_bench.py [--repeats 3]

For each of Python 3.8 and 3.13 found (pyenv's newest of each, else pythonX.Y on PATH), one
`python smoke.py health --tcp 127.0.0.1:PORT` run of the single file against the same run
of the source tree, measured in this run. Both come from one snapshot of the repository
(smoke.py, checks/ and tools/bundle.py copied to a temporary directory, the bundle built
there), so that files being edited meanwhile change neither:

- warm: the bundle's code cache filled, the tree's __pycache__ written (a warm-up run of
  each first). Target <= 1.05.
- cold: no cache: the bundle's cache directory empty and never written, and a copy of the
  tree without __pycache__, both with PYTHONDONTWRITEBYTECODE set, so each compiles what
  it imports. Target <= 1.50. Cold against the warm tree is printed too, for reference:
  compiling the modules a run imports costs more than a whole warm run.

Ratios are instruction counts (valgrind --tool=callgrind, repeatable on a noisy machine)
where valgrind is installed, which then decide the target, else wall-time medians of
`repeats` runs timed in turns (with their ranges). bench/run.py calls bundle_figures.
"""

import argparse
import glob
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
VALGRIND = shutil.which("valgrind")
VERSIONS = ("3.8", "3.13")
TARGETS = {"warm": 1.05, "cold": 1.5}


def find_python(version):
    """pyenv's newest X.Y (called directly: its shim adds start-up time), else pythonX.Y on PATH."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)),
                   key=lambda p: [int(x) for x in p.split("/versions/")[1].split("/")[0].split(".") if x.isdigit()])
    if found:
        return found[-1]
    found = shutil.which("python" + version)
    return found if found and "shims" not in found else None


def listening():
    """A port on 127.0.0.1 that accepts connections (the tcp check passes), served by a thread."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)

    def serve():
        while True:
            try:
                server.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    return server


def instructions(argv, env):
    """Instructions the command executes, or None when callgrind says nothing."""
    done = subprocess.run([VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null"] + argv,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    found = [line for line in done.stderr.splitlines() if "Collected :" in line]
    return int(found[-1].split(":")[-1]) if found else None


def walls(commands, repeats):
    """{name: [seconds]} of each (argv, env), timed in turns so that drift in the machine hits all."""
    times = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (argv, env) in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            times[name].append(time.perf_counter() - started)
    return times


def snapshot(workdir):
    """(the tree's smoke.py, a copy of it without __pycache__, the bundle built from it)."""
    trees = [os.path.join(workdir, name) for name in ("tree", "cold-tree")]
    for tree in trees:
        os.mkdir(tree)
        shutil.copy(os.path.join(ROOT, "smoke.py"), tree)
        shutil.copytree(os.path.join(ROOT, "checks"), os.path.join(tree, "checks"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    os.mkdir(os.path.join(trees[0], "tools"))
    shutil.copy(os.path.join(ROOT, "tools", "bundle.py"), os.path.join(trees[0], "tools"))
    bundle = os.path.join(workdir, "dist", "smoke.py")
    os.mkdir(os.path.dirname(bundle))  # tools/bundle.py makes no directory but make bundle's dist/
    subprocess.run([sys.executable, os.path.join(trees[0], "tools", "bundle.py"), "--output", bundle], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(trees[0], "smoke.py"), os.path.join(trees[1], "smoke.py"), bundle


def measure(python, tree, cold_tree, bundle, port, workdir, repeats):
    """{name: (instructions or None, [seconds])} of tree/bundle, warm/cold, for one Python."""
    run = ["health", "--tcp", "127.0.0.1:%d" % port]
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "XDG_CACHE_HOME")}
    base["XDG_STATE_HOME"] = tempfile.mkdtemp(dir=workdir)  # run history kept here, not in the user's
    warm_cache, cold_cache = tempfile.mkdtemp(dir=workdir), tempfile.mkdtemp(dir=workdir)
    commands = {
        "tree warm": ([python, tree] + run, base),
        "bundle warm": ([python, bundle] + run, dict(base, XDG_CACHE_HOME=warm_cache)),
        "tree cold": ([python, cold_tree] + run, dict(base, PYTHONDONTWRITEBYTECODE="1")),
        "bundle cold": ([python, bundle] + run, dict(base, XDG_CACHE_HOME=cold_cache, PYTHONDONTWRITEBYTECODE="1")),
    }
    for argv, env in (commands["tree warm"], commands["bundle warm"]):  # writes __pycache__ and the code cache
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit("bundle bench: %s exited %d: %s" % (" ".join(argv), done.returncode, done.stderr[-500:]))
    for argv, env in commands.values():  # the page cache
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    times = walls(commands, repeats)
    return {name: (instructions(argv, env) if VALGRIND else None, times[name])
            for name, (argv, env) in commands.items()}


def ratio_line(ours, theirs, against="the tree's"):
    """(ratio deciding the target, line): instructions when both were counted, else wall medians."""
    (our_count, our_times), (their_count, their_times) = ours, theirs
    median, base = statistics.median(our_times), statistics.median(their_times)
    walls_text = "wall %.1f ms against %.1f ms (median of %d, ranges %.1f-%.1f and %.1f-%.1f): %.2f" % (
        median * 1e3, base * 1e3, len(our_times), min(our_times) * 1e3, max(our_times) * 1e3,
        min(their_times) * 1e3, max(their_times) * 1e3, median / base)
    if our_count and their_count:
        ratio = our_count / their_count
        return ratio, "%.1f M instructions against %s %.1f M: ratio %.3f; %s" % (
            our_count / 1e6, against, their_count / 1e6, ratio, walls_text)
    return median / base, walls_text


def bundle_figures(missed: list, repeats: int = 3) -> None:
    """Print the single file's warm and cold start-up ratios against the source tree's on each of
    Python 3.8 and 3.13 found, each with its target; append a name to missed for each one missed."""
    with tempfile.TemporaryDirectory() as workdir:
        tree, cold_tree, bundle = snapshot(workdir)
        server = listening()
        try:
            for version in VERSIONS:
                python = find_python(version)
                if python is None:
                    print("bundle start-up, Python %s: not installed, not measured" % version)
                    continue
                found = measure(python, tree, cold_tree, bundle, server.getsockname()[1], workdir, repeats)
                for kind in ("warm", "cold"):
                    ratio, line = ratio_line(found["bundle " + kind], found["tree " + kind])
                    print("bundle start-up, Python %s, %s: %s (target <= %.2f)" % (version, kind, line, TARGETS[kind]))
                    if ratio > TARGETS[kind]:
                        missed.append("bundle %s start-up (Python %s)" % (kind, version))
                _, line = ratio_line(found["bundle cold"], found["tree warm"], "the warm tree's")
                print("bundle start-up, Python %s, cold against the warm tree: %s (reported)" % (version, line))
        finally:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept(), which close() alone does not
            except OSError:
                pass
            server.close()


def main():
    parser = argparse.ArgumentParser(description="the single file's start-up against the source tree's")
    parser.add_argument("--repeats", type=int, default=3, help="wall-time samples per command (median)")
    args = parser.parse_args()
    missed = []
    bundle_figures(missed, args.repeats)
    print("missed: %s" % ", ".join(missed) if missed else "all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
