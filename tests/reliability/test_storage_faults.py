"""Storage faults: the whole pipeline through a proxy that fails 10% of the loopback S3 server's
requests (500, 503, timeouts, truncated uploads). The run completes through retries with exactly
the planned output, and reports the retries in its stage stats."""

from __future__ import annotations

import pytest

from flows.fanout import StageSummary
from flows.synthesize import synthesize
from synthvision.run import Run
from tests.conftest import tiny_config
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.harness import TALLY, check_complete
from tests.reliability.test_kill_points import SEED


@pytest.mark.slow
def test_a_run_completes_through_injected_storage_faults(s3_endpoint, s3_bucket, colours_file, prefect_server):
    url, _ = s3_bucket
    proxy = FaultProxy(s3_endpoint, rate=0.10, seed=SEED, hang_s=1.0)
    client = {"read_timeout": 0.5, "connect_timeout": 1, "retries": {"mode": "standard", "max_attempts": 10}}
    try:
        config = tiny_config(
            f"{url}/run",
            colours_file,
            run_name="faults",
            storage_options={"endpoint_url": proxy.url, "config_kwargs": client},
            shards={"images_per_class": 6, "shard_size": 2},
            orchestration={"retries": 4, "retry_delay_s": 0, "retry_jitter": 0, "max_workers": 2, "gpu_limit": None},
        )
        result = synthesize(config)
    finally:
        proxy.close()
    TALLY.faults.update(proxy.faults)
    print(
        f"storage faults (SYNTHVISION_KILL_SEED={SEED}): {dict(proxy.faults)} in {proxy.requests} requests; stats: "
        + "; ".join(
            f"{stage} {summary.storage_requests} task retries {summary.task_retries}"
            for stage, summary in result.stages.items()
            if isinstance(summary, StageSummary)
        )
    )
    assert sum(proxy.faults.values()) >= 0.05 * proxy.requests > 0

    direct = Run(
        config.model_copy(update={"storage_options": {"endpoint_url": s3_endpoint}})
    )  # a reader past the proxy
    check_complete(direct)
    stats = [result.stages[stage].storage_requests for stage in ("generate", "score")]
    assert (
        sum(s["retries"] for s in stats) + sum(result.stages[stage].task_retries for stage in ("generate", "score")) > 0
    )
    assert sum(s["failed_attempts"] for s in stats) > 0
