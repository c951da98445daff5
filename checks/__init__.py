"""smoke.py's library: probes, conditions, runner, renderers. Nothing here prints or exits."""

__version__ = "0.1.0"


class SmokeError(Exception):
    """We could not check: mapped to an exit code in one place (smoke.main)."""

    exit_code = 3


class ConfigError(SmokeError):
    """Bad configuration or usage; nothing was run."""

    exit_code = 2


class CheckError(SmokeError):
    """One check could not be evaluated (missing executable, unreadable file): status `error`."""
