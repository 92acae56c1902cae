"""User-facing errors.

Anything raised as a `SynthvisionError` is the user's to fix (a config field, an input file, a missing
weights folder): the CLI prints it as one line naming the culprit, with no traceback. Every other
exception is a bug or an infrastructure fault and keeps its traceback.
"""


class SynthvisionError(Exception):
    """An error the user can fix; its message names the field, file or shard at fault."""


class ConfigError(SynthvisionError):
    """The run config is invalid; raised before any work starts."""


class DataError(SynthvisionError):
    """An input file (label space, test set, shard) is missing or malformed."""


class ModelLoadError(SynthvisionError):
    """Model weights could not be found or loaded (a hub id offline, a missing local path)."""


class StorageFull(SynthvisionError):
    """The output's filesystem is full or over quota: not retried (a retry would fill it again); the
    message names the output and the file being written."""
