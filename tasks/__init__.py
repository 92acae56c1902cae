"""Thin Prefect tasks (`tasks.stages`): each ensures one shard or stage through `synthvision.stages.units`.

Importing this package sets synthvision's Prefect defaults before Prefect itself is imported.
"""

import logging
import os

# The embedded server's telemetry call fails (and logs an error) on machines without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


class _UserErrorsWithoutTraceback(logging.Filter):
    """Prefect logs a failed task's or flow's exception with its traceback. A `SynthvisionError` is
    the user's to fix and its message names the culprit, and work stopped by a signal says so: log the
    message alone (CLI, UI and API)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from synthvision.core.errors import SynthvisionError
        from synthvision.core.stopping import StopRequested

        if record.exc_info and isinstance(record.exc_info[1], (SynthvisionError, StopRequested)):
            record.exc_info = None
            record.exc_text = None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_UserErrorsWithoutTraceback())
