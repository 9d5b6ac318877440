"""Errors a user is meant to read: each names the problem and the fix."""


class HyperscaleError(Exception):
    """Base class: anything raised for bad user input (config, data, checkpoints)."""


class ConfigError(HyperscaleError):
    """A config key is unknown, mistyped, out of range, or conflicts with another.

    The message always starts with the dotted key so a user can find it in YAML
    or fix it with `--set key=value`.
    """

    def __init__(self, key: str, problem: str, fix: str | None = None):
        self.key, self.problem, self.fix = key, problem, fix
        msg = f"config key '{key}': {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)


class DataError(HyperscaleError):
    """Input rows cannot be used (too many malformed rows, missing columns, no file)."""


class CheckpointError(HyperscaleError):
    """A checkpoint is incomplete or was written by an incompatible run."""


class RunDirError(HyperscaleError):
    """A run directory is damaged, or cannot be written, or a command would overwrite a finished run."""


class LaunchError(HyperscaleError):
    """The cluster under a run failed (a Ray process died, a worker could not start): not the run's data or config."""
