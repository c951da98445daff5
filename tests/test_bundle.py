"""The single-file bundle (make bundle): built from the tree, run as a file, through a pipe,
under -OO and every Python found, never shadowed by a checks/ directory where it runs."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
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
    for name in ("argparse", "os", "json", "socket", "threading", "checks"):  # what it imports first and most
        (shared / (name + ".py")).write_text("open(%r, 'a').write('%s ran\\n')\n" % (str(tmp_path / "ran"), name))
    oldest = find_python("3.8") or sys.executable
    for argv in ([sys.executable, str(copy)], [oldest, "-S", str(copy)], [oldest, "-I", str(copy)]):
        done = run(argv + ["health", "--tcp", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path / "s")], shared)
        assert done.returncode == 0, (argv, done.stderr)
    done = run([sys.executable, "-", "health", "--tcp", "127.0.0.1:%d" % port, "--state-dir", str(tmp_path / "s")],
               shared, input=copy.read_text())  # pasted: the current directory is beside it
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists(), (tmp_path / "ran").read_text()
