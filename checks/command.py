"""The subcommand face: what the command line calls on every subcommand, each hook with a
default that does nothing, as pip's Command base has.

Each subcommand module (health, deploy, heartbeat, perf, rollback) ends with COMMAND, an
instance of a Command subclass that overrides the hooks it needs; `all`, which runs the
others' sections, is All below. cli calls these names and no others, on every subcommand
alike: it never asks a module what it happens to have.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from checks.model import Outcome, Planned

# The hooks, as a test pins them on every command.
HOOKS = ("add_arguments", "flags_describe", "from_args", "load", "plan", "run", "uses", "check_names", "notice",
         "deadline")


class Command:
    NAME = ""
    # The flags that describe checks with no config file, named in "nothing to check".
    FLAGS = ""
    # --help's words for --deadline when the command takes it as its own (heartbeat's detection
    # deadline); None: --deadline bounds the whole run.
    DEADLINE_HELP: Optional[str] = None
    # It acts (rollback): `all` runs what a config checks, and an action only when asked by name.
    ACTION = False
    # Its --help's examples: a few command lines, each ready to paste, indented two spaces.
    EXAMPLES = ""

    def add_arguments(self, parser) -> None:
        """Its own flags, after the common ones."""

    def flags_describe(self, args) -> bool:
        """Whether the flags alone say what to check, so that a config found in the directory
        (not named by --config) is not read: it would add checks nobody asked for."""
        return False

    def from_args(self, args, secrets, configured: Any = None) -> Any:
        """The spec the flags give: its own (configured is None), or the configured one as the
        flags change it; None when no flag says anything. Called once. secrets (a
        secrets.Secrets) takes what the flags carry that is secret (an Authorization header)."""
        return None

    def load(self, section: Any, where: str) -> Any:
        """The spec of its config section; ConfigError names the field."""
        from checks import ConfigError
        raise ConfigError("%s: %s has no config section" % (where, self.NAME))

    def plan(self, spec: Any) -> List[Planned]:
        """The steps a run would take, for --dry-run, --only and --tag."""
        return []

    def run(self, spec: Any, ctx) -> Outcome:
        """Run the steps ctx.chosen names (None: all); its results and metrics."""
        from checks.model import Outcome
        return Outcome([])

    def uses(self, spec: Any) -> Tuple[str, ...]:
        """Other sections of the config it runs (rollback's --run and verify): loaded and
        checked before anything runs, and handed to it as ctx.run_sections."""
        return ()

    def check_names(self, spec: Any, planned: Dict[str, List[str]]) -> None:
        """Check its own references to the checks those sections run ({section: names})."""

    def notice(self, spec: Any) -> List[str]:
        """Lines a person at a terminal should read before it starts (a load sent elsewhere)."""
        return []

    def deadline(self, spec: Any, tags: Sequence[str]) -> Optional[float]:
        """The run's deadline that --tag TIER selects (a tier's own), or None."""
        return None


class All(Command):
    """`all`: every section a config has, each through its own command."""

    NAME = "all"
    EXAMPLES = """  python3 smoke.py all --config smoke.json --format text
  python3 smoke.py all --config smoke.json --output smoke-report.json --junit junit.xml --quiet
  python3 smoke.py all --config smoke.json --tag hourly --deadline 1800 --notify "$SLACK_WEBHOOK_URL"
"""


def of(module_name: Optional[str]) -> Command:
    """The face of the command a module implements (smoke.COMMANDS's entry); All for None."""
    if module_name is None:
        return All()
    __import__(module_name)  # not importlib.import_module: importing importlib costs a one-check run
    return sys.modules[module_name].COMMAND
