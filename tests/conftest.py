"""Shared fixtures. The environment is set before Prefect or Hugging Face libraries are imported:
tests never touch the network, the user's Prefect home, or the user's Hugging Face cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="synthvision-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["HF_HUB_OFFLINE"] = "1"
# as README asks of a real server: GPU slots' leases survive a restart (tasks/slots.py)
os.environ["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] = "prefect.server.concurrency.lease_storage.filesystem"
os.environ["HF_HOME"] = str(_HOME / "hf")
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402

from synthvision.core.config import RunConfig, parse_config  # noqa: E402
from tests.loopback import PrefectServer, moto_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY_ID = "AKIAFAKEKEYID0000000"
FAKE_SECRET = "fake-secret-access-key-never-to-be-printed"


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server for the whole session (it takes ~10 s to start); yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def prefect_cli_server():
    """A Prefect server started as a user starts one (`prefect server start`, SQLite), on loopback,
    with its own home; yields the environment that points a process at it."""
    server = PrefectServer(_HOME / "prefect-cli-server").start()
    yield server.env
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API server (moto_server) on loopback for the session, with fake credentials in the
    environment (as a user's would be); yields its endpoint URL."""
    with moto_server() as endpoint:
        os.environ.update(
            AWS_ACCESS_KEY_ID=FAKE_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_SECRET, AWS_DEFAULT_REGION="us-east-1"
        )
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket per test; yields (s3 URL of the bucket, storage options)."""
    import s3fs

    options = {"endpoint_url": s3_endpoint}
    import hashlib

    readable = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    # the digest tells apart parametrized cases whose names share their first 40 characters
    bucket = f"test-{readable}-{hashlib.sha256(request.node.name.encode()).hexdigest()[:8]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}", options


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    """(URL, storage options) of a run's output: on local disk, then on the loopback S3 server."""
    if request.param == "local":
        return str(tmp_path / "run"), {}
    url, options = request.getfixturevalue("s3_bucket")
    return f"{url}/run", options


@pytest.fixture
def colours_file(tmp_path: Path) -> Path:
    path = tmp_path / "colours.txt"
    path.write_text("red\ngreen\nblue\n")
    return path


def tiny_config(output: Path | str, label_space: Path, **sections) -> RunConfig:
    """A fast config on tiny models: 3 classes x 4 images, shards of 4, 2 denoising steps at 32 px."""
    data = {
        "run_name": "test",
        "output": str(output),
        "label_space": str(label_space),
        "generator": {"backend": "tiny", "steps": 2, "resolution": 32, "batch_size": 4},
        "shards": {"images_per_class": 4, "shard_size": 4},
        "clip": {"model": "tiny", "batch_size": 16},
        "training": {"epochs": 3, "batch_size": 8},
        "evaluation": {"demo_test_set": {"per_class": 3, "size": 32}},
        # No Prefect GPU limit: on the test server's SQLite each slot costs ~1.4 s of retries. The tests
        # of the limit (end to end, engines, the Prefect server ones) name a limit and its size.
        "orchestration": {
            "retries": 2,
            "retry_delay_s": 0,
            "retry_jitter": 0,
            "max_workers": 2,
            "gpu_limit": None,
            "gpu_slots": 4,
        },
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return parse_config(data)


@pytest.fixture
def make_config(tmp_path: Path, colours_file: Path):
    def make(output: Path | str | None = None, **sections) -> RunConfig:
        return tiny_config(output or tmp_path / "run", colours_file, **sections)

    return make


@pytest.fixture(scope="session")
def offline_hub() -> dict[str, str]:
    """The session's Hugging Face cache (`HF_HOME` above, offline) holding the models the shipped configs
    name, under their real ids (see tests/offline_hub.py); yields repository id -> commit."""
    from huggingface_hub import constants

    from tests.offline_hub import build_offline_hub

    return build_offline_hub(Path(constants.HF_HUB_CACHE))
