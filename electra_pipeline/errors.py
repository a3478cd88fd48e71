class PipelineError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 2, no traceback."""


class ConfigError(PipelineError, ValueError):
    """An invalid configuration value; the message names the field."""


class DataError(PipelineError):
    """Bad input data; the message names the file (and line where known)."""
