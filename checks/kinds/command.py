"""command: run an argv (a shell only when shell = true) with a timeout and capped output.

Facts: exit_code, stdout, stderr (each up to max_output bytes), latency_ms, and
version, the first dotted version in the output (so `version >= 3.11` reads
`python3 --version`, and go's "1.21" is above 1.9). A missing executable is an error naming it.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, Dict, List, Optional

from checks import CheckError, ConfigError, lifecycle
from checks.config import check_os_text

NAME = "command"
DEFAULT_EXPECT = ("exit_code == 0",)
MAX_OUTPUT = 64 * 1024
MAX_OUTPUT_LIMIT = 64 * 1024 * 1024
_DIGITS_AND_DOTS = re.compile(r"[\d.]+")  # one class repeated, nothing after: no backtracking
_PR_SET_PDEATHSIG = 1
_SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", "|&", "$(", "`"}


def load(fields) -> Dict[str, Any]:
    shell = fields.flag("shell", False)
    command = fields.get("command", (list, str))
    if shell and not isinstance(command, str):
        raise ConfigError("%s: with shell = true, give the command as one string" % fields.at("command"))
    if not shell:
        command = fields.strings("command") if isinstance(command, list) else _split(command, fields)
        if not command:
            raise ConfigError("%s: the command is empty" % fields.at("command"))
        for i, word in enumerate(command):
            if "\0" in word or not (word or i):
                check_os_text(word, "%s[%d]" % (fields.at("command"), i))
    else:
        check_os_text(command, fields.at("command"))
    env = fields.get("env", (dict,), {})
    for name, value in env.items():
        if not isinstance(value, str):
            raise ConfigError("%s.%s: expected a string" % (fields.at("env"), name))
        if not name or "=" in name or "\0" in name + value:
            raise ConfigError("%s.%s: an environment variable's name is not empty and has no '=' or NUL, "
                              "nor has its value a NUL" % (fields.at("env"), name))
    return {"command": command, "shell": shell, "env": env, "cwd": fields.path("cwd", None),
            "max_output": fields.integer("max_output", MAX_OUTPUT, 1, MAX_OUTPUT_LIMIT)}


def _split(command: str, fields) -> List[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError("%s: %s" % (fields.at("command"), exc))
    operator = next((word for word in argv if word in _SHELL_OPERATORS), None)
    if operator:  # run without a shell, "echo hi | grep x" prints "hi | grep x" and passes
        raise ConfigError("%s: %r is shell syntax, but the command runs without a shell: set shell = true, "
                          "or give the argv as a list" % (fields.at("command"), operator))
    return argv


def target(params) -> str:
    command = params["command"]
    return command if isinstance(command, str) else " ".join(_quoted(word) for word in command)


def _quoted(word: str) -> str:
    """A word as a shell reads it, in double quotes where needed: shlex.quote's '"'"'
    would split a secret into pieces that masking cannot recognise."""
    if word and all(char.isalnum() or char in "@%+=:,./_-" for char in word):
        return word
    return '"%s"' % re.sub(r'(["\\$`])', r"\\\1", word)


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    env = dict(os.environ, **params["env"]) if params["env"] else None
    started = time.monotonic()
    lifecycle.adopt_orphans()  # what the command leaves behind with setsid comes back to us
    try:
        proc = subprocess.Popen(params["command"], shell=params["shell"], env=env, cwd=params["cwd"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=die_with_parent())
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename else params["command"][0]
        if params["cwd"] and not os.path.isdir(params["cwd"]):
            missing = params["cwd"]
        raise CheckError("cannot run: %s not found" % missing)
    except OSError as exc:
        raise CheckError("cannot run %s: %s" % (target(params), exc.strerror or exc))
    token = ctx.cleanup.add(lambda: _kill(proc), "process group %d of %s" % (proc.pid, target(params))) \
        if ctx.cleanup else None
    lifecycle.own_group(proc.pid)
    try:
        out, err = _Capped(proc.stdout, params["max_output"]), _Capped(proc.stderr, params["max_output"])
        try:
            exit_code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            exit_code = None
    finally:
        # The whole process group, so no orphan outlives its check, and a background
        # child still holding the pipes cannot keep the drain below waiting.
        _kill(proc)
        if token:
            ctx.cleanup.remove(token)
        lifecycle.release_group(proc.pid)
    drained = time.monotonic() + 1.0
    out.join(drained)
    err.join(drained)
    if out.out_of_memory or err.out_of_memory:
        raise CheckError("out of memory keeping %s's output (a limit of this host): lower max_output"
                         % target(params))
    stdout, stderr = out.text(), err.text()
    if exit_code is None:
        return {"error": "timed out after %gs" % timeout, "stdout": stdout, "stderr": stderr}
    facts = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr,
             "latency_ms": round((time.monotonic() - started) * 1000, 1)}
    version = first_version(stdout) or first_version(stderr)
    if version:
        facts["version"] = version
    return facts


def first_version(text: str) -> Optional[str]:
    """The first dotted number ("3.11.4") in text, in linear time.

    The obvious regex, \\d+\\.\\d+(\\.\\d+)*, retries every start in a run of
    digits with no dot: 20 000 digits of output took 1.6 s, 64 KiB a minute.
    """
    for run in _DIGITS_AND_DOTS.finditer(text):
        parts = run.group().split(".")
        for i in range(len(parts) - 1):
            if parts[i] and parts[i + 1]:
                end = i + 2
                while end < len(parts) and parts[end]:
                    end += 1
                return ".".join(parts[i:end])
    return None


@functools.lru_cache(maxsize=None)
def die_with_parent() -> Optional[Callable[[], None]]:
    """A preexec_fn asking Linux to SIGKILL the child when smoke.py dies, even by kill -9.

    Its own process group escapes our Ctrl-C and cleanup kills it on every other path;
    this covers the one path where no code of ours runs. None where prctl is missing.
    """
    prctl = lifecycle.prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # we died before the signal was armed
            os._exit(1)
    return arm


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        pass


class _Capped:
    """Drains a pipe in a thread, keeping the first `cap` bytes, so output never fills memory."""

    def __init__(self, pipe, cap: int):
        self.data, self.dropped, self._pipe, self._cap = bytearray(), 0, pipe, cap
        self.out_of_memory = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with self._pipe:
            for chunk in iter(lambda: self._pipe.read1(65536), b""):
                room = self._cap - len(self.data)
                try:
                    self.data += chunk[:max(0, room)]
                except MemoryError:  # our limit (ulimit -v), not the command's: keep draining, keep nothing
                    self.out_of_memory, self._cap, self.data = True, 0, bytearray()
                self.dropped += max(0, len(chunk) - max(0, room))

    def join(self, deadline: float) -> None:
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def text(self) -> str:
        if not self.dropped:
            return bytes(self.data).decode("utf-8", errors="replace")
        # Cut: decode to the last whole character, or a U+FFFD would hide where a secret's start ends.
        import codecs
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self.data), final=False)
        return text + "\n\u2026 (%d more bytes)" % self.dropped
