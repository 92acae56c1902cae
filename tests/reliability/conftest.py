"""Fixtures of the reliability suite, and its summary line at the end of the test session."""

from __future__ import annotations

import os

import pytest

from tests.reliability.harness import TALLY, Launcher


@pytest.fixture(scope="session")
def launcher(prefect_server, tmp_path_factory):
    """Forks CLI processes pointed at the session's Prefect server. The fork server starts here and
    keeps the environment of this moment; the test process's own environment is restored after."""
    from multiprocessing import forkserver

    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = prefect_server
    try:
        launcher = Launcher(tmp_path_factory.mktemp("cli-logs"))
        forkserver.ensure_running()
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL")
        else:
            os.environ["PREFECT_API_URL"] = saved
    return launcher


def pytest_terminal_summary(terminalreporter):
    if TALLY.kills or TALLY.faults or TALLY.bad_inputs or TALLY.operations:
        terminalreporter.write_line(TALLY.line())
