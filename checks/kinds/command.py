"""command: run an argv (a shell only when shell = true) with a timeout and capped output.

Facts: exit_code, stdout, stderr (each up to max_output bytes), latency_ms, and
version, the first dotted version in the output (so `version >= 3.11` reads
`python3 --version`, and go's "1.21" is above 1.9). A missing executable is an error naming it.
With leave_running (a rollback's steps, deploy's deploy and cleanup phases, by default),
what it leaves running when it exits (a daemon it starts) is the system's, not the run's.
"""

from __future__ import annotations

import re
import shlex

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional

from checks import ConfigError
from checks.config import check_os_text
from checks.probes import proc

NAME = "command"
DEFAULT_EXPECT = ("exit_code == 0",)
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("exit_code", "stdout", "stderr", "latency_ms", "version")
MAX_OUTPUT = 64 * 1024
MAX_OUTPUT_LIMIT = 64 * 1024 * 1024
_DIGITS_AND_DOTS = re.compile(r"[\d.]+")  # one class repeated, nothing after: no backtracking
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
            "max_output": fields.integer("max_output", MAX_OUTPUT, 1, MAX_OUTPUT_LIMIT),
            "leave_running": fields.flag("leave_running", False)}


def _split(command: str, fields) -> List[str]:
    return split(command, fields.at("command"))


def split(command: str, where: str) -> List[str]:
    """A command string as its argv, as a shell would split it; shell syntax in it is refused."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError("%s: %s" % (where, exc))
    operator = next((word for word in argv if word in _SHELL_OPERATORS), None)
    if operator:  # run without a shell, "echo hi | grep x" prints "hi | grep x" and passes
        raise ConfigError("%s: %r is shell syntax, but the command runs without a shell: set shell = true, "
                          "or give the argv as a list" % (where, operator))
    return argv


def target(params) -> str:
    return proc.describe(params["command"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    done = proc.run(params["command"], timeout, ctx.cleanup, params["shell"], params["env"], params["cwd"],
                    params["max_output"], params["leave_running"])
    if done.exit_code is None:
        return {"error": "timed out after %gs" % timeout, "stdout": done.stdout, "stderr": done.stderr}
    facts = {"exit_code": done.exit_code, "stdout": done.stdout, "stderr": done.stderr,
             "latency_ms": round(done.seconds * 1000, 1)}
    version = first_version(done.stdout) or first_version(done.stderr)
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
