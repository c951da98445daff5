"""The single-file bundle (make bundle): built from the tree, run as a file, through a pipe,
under -OO and every Python found, never shadowed by a checks/ directory where it runs."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, as_root, planted_link, shared_dir
from e2e_pythons import VERSIONS, find_python


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "smoke.py"
    subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--output", str(path)], check=True,
                   capture_output=True)
    return path


@pytest.fixture
def port(listening_port):
    return listening_port


def run(argv, tmp_path, **kwargs):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.update(kwargs.pop("env", {}))
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=str(tmp_path), env=env, **kwargs)


def test_the_bundle_is_one_deterministic_generated_file(bundle, tmp_path):
    again = tmp_path / "again.py"
    subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--output", str(again)], check=True,
                   capture_output=True)
    assert again.read_bytes() == bundle.read_bytes()
    head = bundle.read_text().splitlines()[:3]
    assert head[0] == "#!/usr/bin/env python3" and "Generated, do not edit" in head[2]
    assert bundle.read_text().isascii()  # any Python parses it far enough to say it is too old


@pytest.mark.parametrize("version", VERSIONS)
def test_it_runs_as_a_file_and_through_a_pipe_on_every_python(bundle, port, tmp_path, version):
    python = find_python(version)
    if python is None:
        pytest.skip("Python %s is not installed" % version)
    (tmp_path / "checks").mkdir()  # someone else's checks package where it runs must not shadow ours
    (tmp_path / "checks" / "__init__.py").write_text("raise SystemExit('the wrong checks package')\n")
    state = ["--state-dir", str(tmp_path / "state")]
    done = run([python, str(bundle), "health", "--tcp", "127.0.0.1:%d" % port] + state, tmp_path)
    assert done.returncode == 0 and '"status": "pass"' in done.stdout, done.stderr
    with open(bundle) as script:
        done = run([python, "-", "health", "--tcp", "127.0.0.1:1", "--format", "text"] + state, tmp_path,
                   stdin=script)
    assert done.returncode == 1 and "FAIL  tcp 127.0.0.1:1" in done.stdout, done.stderr
    done = run([python, "-OO", str(bundle), "health", "--help"], tmp_path)
    assert done.returncode == 0 and "--url" in done.stdout and "usage: smoke.py health" in done.stdout


def test_code_is_cached_in_a_directory_of_our_own_and_a_bad_cache_is_ignored(bundle, port, tmp_path):
    argv = [sys.executable, str(bundle), "health", "--tcp", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path)]
    env = {"PYTHONDONTWRITEBYTECODE": ""}
    assert run(argv, tmp_path, env=env).returncode == 0
    cache = tmp_path / "cache" / "smoke.py" / sys.implementation.cache_tag
    files = sorted(cache.iterdir())
    assert any("checks.cli." in f.name for f in files) and oct(cache.stat().st_mode & 0o777) == "0o700"
    for f in files:
        f.write_bytes(b"not marshal data")
    assert run(argv, tmp_path, env=env).returncode == 0
    import marshal
    planted = marshal.dumps(compile("print('PLANTED')", "x", "exec"))
    for f in cache.iterdir():
        f.write_bytes(planted)
    assert "PLANTED" in run(argv, tmp_path, env=env).stdout  # the cache is used, when it is ours alone
    os.chmod(cache, 0o777)  # a directory others can write to could hold their code: not used
    done = run(argv, tmp_path, env=env)
    assert done.returncode == 0 and "PLANTED" not in done.stdout


def test_a_traceback_shows_the_embedded_file_and_line(bundle, tmp_path):
    code = ("import runpy, sys, traceback\n"
            "sys.argv = ['smoke', '--version']\n"
            "try:\n    runpy.run_path(%r, run_name='bundle')\nexcept SystemExit:\n    pass\n"
            "import checks.model\n"
            "try:\n    checks.model.cut(None, 1)\nexcept TypeError:\n    traceback.print_exc()\n" % str(bundle))
    done = run([sys.executable, "-c", code], tmp_path)
    assert 'File "%s/checks/model.py", line' % bundle in done.stderr
    assert "return text if len(text) <= limit" in done.stderr, done.stderr


def test_pasted_it_never_imports_the_current_directorys_files(bundle, tmp_path):
    (tmp_path / "argparse.py").write_text("print('PWNED')\n")
    with open(bundle) as script:
        done = run([sys.executable, "-", "--version"], tmp_path, stdin=script)
    assert done.returncode == 0 and "PWNED" not in done.stdout and "smoke.py" in done.stdout


def test_a_cache_entry_that_is_not_code_is_compiled_again(bundle, listening_port, tmp_path):
    import marshal
    argv = [sys.executable, str(bundle), "health", "--tcp", "127.0.0.1:%d" % listening_port, "--state-dir",
            str(tmp_path)]
    env = {"PYTHONDONTWRITEBYTECODE": ""}
    assert run(argv, tmp_path, env=env).returncode == 0
    cache = tmp_path / "cache" / "smoke.py"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    for f in (cache / sys.implementation.cache_tag).iterdir():
        f.write_bytes(marshal.dumps(42))
    assert run(argv, tmp_path, env=env).returncode == 0


def test_a_module_planted_beside_the_single_file_never_runs(bundle, tmp_path, port):
    import shutil
    shared = tmp_path / "shared"
    shared.mkdir()
    copy = shared / "smoke.py"
    shutil.copy(str(bundle), str(copy))
    for name in ("argparse", "os", "json", "socket", "threading", "checks", "zlib", "binascii"):  # first, most, cold
        (shared / (name + ".py")).write_text("open(%r, 'a').write('%s ran\\n')\n" % (str(tmp_path / "ran"), name))
    oldest = find_python("3.8") or sys.executable
    for argv in ([sys.executable, str(copy)], [oldest, "-S", str(copy)], [oldest, "-I", str(copy)]):
        done = run(argv + ["health", "--tcp", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path / "s")], shared)
        assert done.returncode == 0, (argv, done.stderr)
    done = run([sys.executable, "-", "health", "--tcp", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path / "s")],
               shared, input=copy.read_text())  # pasted: the current directory is beside it
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists(), (tmp_path / "ran").read_text()


# --- pasted into a terminal, started quickly (the single file's two issues) --------------------


def test_every_line_is_short_printable_ascii_that_a_shell_and_a_terminal_take_whole(bundle):
    lines = bundle.read_text().split("\n")
    assert lines[-1] == "" and len(lines) > 100
    too_long = [(number, len(line)) for number, line in enumerate(lines, 1) if len(line) > 200]
    assert not too_long, too_long  # dash and busybox sh cut a line at 4 KB in a terminal
    for number, line in enumerate(lines, 1):
        assert all(" " <= c <= "~" for c in line), (number, line)  # no tab, nothing a terminal interprets
        assert line == line.rstrip(), number  # trailing blanks, which some terminals and editors drop
        assert not line.startswith("~"), number  # ssh's escape character, at the start of a line
        assert line.strip() != "EOF", number  # the end of the documented here-document


def test_the_file_is_smaller_than_the_sources_it_holds(bundle):
    size = bundle.stat().st_size
    sources = (ROOT / "smoke.py").stat().st_size + sum(p.stat().st_size for p in (ROOT / "checks").rglob("*.py"))
    assert size < 512 * 1024 and size < sources / 2, (size, sources)


def paste(shell, text, cwd, env, seconds=60):
    """Type text into an interactive shell in a terminal (a pseudo-terminal, canonical mode, as a
    paste into a terminal window is), then wait for the shell to exit."""
    import select
    import threading
    master, slave = os.openpty()
    proc = subprocess.Popen(shell, stdin=slave, stdout=slave, stderr=slave, cwd=str(cwd), env=env,
                            start_new_session=True)
    os.close(slave)
    seen = []

    def drain():  # the terminal's echo and prompts, read so that the shell never waits to write them
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    data = text.encode("ascii")
    try:
        while data:
            if not select.select([], [master], [], seconds)[1]:
                raise AssertionError("the terminal took no input for %d s" % seconds)
            data = data[os.write(master, data[:1024]):]
        proc.wait(seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        os.close(master)
    return b"".join(seen).decode("ascii", "replace")


@pytest.mark.parametrize("shell", [["dash", "-i"], ["busybox", "sh", "-i"], ["bash", "--norc", "--noprofile", "-i"]],
                         ids=["dash", "busybox-sh", "bash"])
def test_it_pastes_into_a_shell_in_a_terminal_through_a_here_document(bundle, port, tmp_path, shell):
    import shutil
    if not shutil.which(shell[0]):
        pytest.skip("%s is not installed" % shell[0])
    out, rc = tmp_path / "out", tmp_path / "rc"
    typed = ("%s - health --tcp 127.0.0.1:%d --format text --state-dir %s >%s 2>&1 <<'EOF'\n%sEOF\n"
             "echo $? >%s\nexit\n" % (sys.executable, port, tmp_path / "state", out, bundle.read_text(), rc))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), PS1="$ ", PS2="> ", TERM="dumb")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    (tmp_path / "checks").mkdir()  # the current directory's checks package must not shadow ours
    (tmp_path / "checks" / "__init__.py").write_text("raise SystemExit('the wrong checks package')\n")
    echoed = paste(shell, typed, tmp_path, env)
    assert rc.exists(), echoed[-2000:]
    assert rc.read_text().strip() == "0" and "PASS  tcp 127.0.0.1:%d" % port in out.read_text(), out.read_text()


def test_a_warm_start_compiles_nothing_but_the_file_itself(bundle, port, tmp_path):
    code = ("import builtins, runpy, sys\n"
            "compiled, compile = [], builtins.compile\n"
            "def counting(source, filename, *args, **kwargs):\n"
            "    compiled.append(filename)\n"
            "    return compile(source, filename, *args, **kwargs)\n"
            "builtins.compile = counting\n"
            "sys.argv = [%r, 'health', '--tcp', '127.0.0.1:%d', '--state-dir', %r]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "finally:\n    sys.stderr.write('COMPILED %%r\\n' %% compiled)\n" % (str(bundle), port, str(tmp_path)))
    env = {"PYTHONDONTWRITEBYTECODE": ""}
    first = run([sys.executable, "-c", code], tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "%s/checks/cli/__init__.py" % bundle in first.stderr and "%s/smoke.py" % bundle in first.stderr
    again = run([sys.executable, "-c", code], tmp_path, env=env)  # the code cache filled: nothing to compile
    assert again.returncode == 0 and "COMPILED [%r]" % str(bundle) in again.stderr, again.stderr


DEBUG = ("import runpy, sys\n"
         "sys.argv = ['smoke.py', '--version']\n"
         "try:\n    runpy.run_path(%r, run_name='bundle')\nexcept SystemExit:\n    pass\n"
         "import checks.cli, checks.model\n"
         "checks.cli.run = lambda *args: checks.model.cut(None, 1)  # an internal error, deep down\n"
         "sys.argv = ['smoke.py', 'health', '--tcp', '127.0.0.1:1', '--debug']\n"
         "runpy.run_path(%r, run_name='__main__')\n")


@pytest.mark.parametrize("version", ["3.8", VERSIONS[-1]])
def test_a_debug_traceback_shows_the_embedded_files_and_lines(bundle, tmp_path, version):
    python = find_python(version)
    if python is None:
        pytest.skip("Python %s is not installed" % version)
    done = run([python, "-c", DEBUG % (str(bundle), str(bundle))], tmp_path)
    assert done.returncode == 1 and "TypeError" in done.stderr, done.stderr
    calls = [line for line in (ROOT / "checks" / "main.py").read_text().split("\n") if "cli.run(" in line]
    assert 'File "%s/smoke.py", line' % bundle in done.stderr and calls[0].strip() in done.stderr, done.stderr
    assert 'File "%s/checks/main.py", line' % bundle in done.stderr
    assert 'File "%s/checks/model.py", line' % bundle in done.stderr
    assert "return text if len(text) <= limit" in done.stderr, done.stderr


@pytest.mark.parametrize("version", ["2.7", "3.6", "3.7"])
def test_an_old_python_is_told_what_is_needed(bundle, tmp_path, version):
    import glob
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)))
    if not found:
        pytest.skip("no python%s here" % version)
    done = run([found[-1], str(bundle), "--version"], tmp_path)  # it parses the whole file first
    assert done.returncode == 2 and done.stderr.startswith("smoke.py needs Python 3.8 or newer; this is %s" % version)


@as_root
def test_make_bundle_never_writes_through_another_users_link(tmp_path):
    """tools/bundle.py writes as smoke.py does (fsio): a link of nobody's at the output, or at
    the temp name beside it, in a sticky shared directory is refused; what it points at is untouched."""
    shared = shared_dir(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    victim.chmod(0o600)
    for name in ("smoke.py", "smoke.py.tmp"):
        planted_link(shared / name, victim)
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--output", str(shared / "smoke.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "link of user 65534" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "mine" and oct(victim.stat().st_mode & 0o777) == "0o600"


def test_make_bundle_makes_its_dist_directory_in_a_fresh_clone(tmp_path):
    """A fresh clone has no dist/: make bundle makes it (an --output elsewhere must exist already)."""
    import shutil
    clone = tmp_path / "clone"
    shutil.copytree(str(ROOT / "checks"), str(clone / "checks"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(str(ROOT / "tools"), str(clone / "tools"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(str(ROOT / "smoke.py"), str(clone / "smoke.py"))
    done = subprocess.run([sys.executable, "tools/bundle.py", "--output", "dist/smoke.py"], cwd=str(clone),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and (clone / "dist" / "smoke.py").is_file(), done.stderr
    done = subprocess.run([sys.executable, "tools/bundle.py", "--output", "elsewhere/smoke.py"], cwd=str(clone),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "cannot write elsewhere/smoke.py" in done.stderr, done.stderr


def test_the_embedded_data_reads_back_whatever_its_length():
    """The data's lines, joined, are the data for every length of its last line: a short last
    line is merged with the one before it in their order (the bundle of one tree's size was a
    stream zlib could not read)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bundle_tool", str(ROOT / "tools" / "bundle.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for length in range(1, 3 * tool.WIDTH * tool.PIECE // 2, 37):
        data = "".join("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"[i % 32] for i in range(length))
        rows = tool.data_literals(data).replace('\n"""\n"""\n', "\n").split("\n")
        assert "".join(rows) == data and all(len(row) >= 16 for row in rows[1:]), length
