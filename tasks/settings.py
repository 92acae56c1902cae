"""Prefect settings synthvision sets before Prefect is imported (environment values still win)."""

import os

# The embedded server's telemetry call fails (and logs an error) on machines without internet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
