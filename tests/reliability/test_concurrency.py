"""Two `synthvision run` processes of one config started at once: one takes the output's lock and
does the work, the other waits for it and then finds every shard committed; no shard is generated
twice. On local disk (O_EXCL) and on the loopback S3 server (conditional PUT)."""

from __future__ import annotations

import re

import pytest
import yaml

from synthvision.core.config import load_config
from synthvision.run import Run
from tests.reliability.harness import check_complete, tail


@pytest.mark.slow
def test_two_runs_of_one_config_generate_each_shard_once(output, launcher, tmp_path, colours_file):
    url, options = output
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "run_name": "twice",
                "output": url,
                "storage_options": options,
                "label_space": str(colours_file),
                "generator": {"backend": "tiny", "steps": 2, "resolution": 32},
                "shards": {"images_per_class": 4, "shard_size": 2},
                "clip": {"model": "tiny"},
                "evaluation": {"demo_test_set": {"per_class": 2, "size": 32}},
                "orchestration": {"max_workers": 1, "gpu_limit": None},
            }
        )
    )
    processes = [launcher.start(["run", str(config_path)]) for _ in range(2)]
    for process in processes:
        process.join(300)
    logs = [tail(process.log, 100_000) for process in processes]
    assert [process.exitcode for process in processes] == [0, 0], logs
    generated = [int(re.search(r"stage: generate, .*?done_now: (\d+)", log).group(1)) for log in logs]
    scored = [int(re.search(r"stage: score, .*?done_now: (\d+)", log).group(1)) for log in logs]
    run = Run(load_config(config_path))
    assert sorted(generated) == sorted(scored) == [0, run.plan.num_shards]  # one did it all, the other none
    waited = [log for log in logs if "is being written by another run" in log]
    assert len(waited) == 1 and "done_now: 0" in waited[0]
    check_complete(run)
    assert not run.storage.exists("lock.json")  # released
