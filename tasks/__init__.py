"""Thin Prefect tasks (`tasks.stages`): each calls one `synthvision.run.Run` method for one shard or stage.

Importing this package sets synthvision's Prefect defaults before Prefect itself is imported.
"""

import os

# The embedded server's telemetry call fails (and logs an error) on machines without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
