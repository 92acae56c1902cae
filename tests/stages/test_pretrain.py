"""The pretrain stage: a run killed mid-training resumes from its checkpoint to the weights of an
unbroken run, with any number of DataLoader workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import TINY_OPTIM, generated_run

KILL_AT_STEP_3 = """
import os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[2]))  # as in the test process: float sums depend on the thread count
from synthvision.core.config import load_config
from synthvision.stages.pretrain import pretrain
from synthvision.run import Run
kill_at_3 = lambda step: os.kill(os.getpid(), signal.SIGKILL) if step == 3 else None
pretrain(Run(load_config(sys.argv[1])), on_step=kill_at_3)
"""


@pytest.mark.slow
def test_killed_pretraining_resumes_from_its_checkpoint_and_matches_an_unbroken_run(tmp_path, make_config):
    from safetensors.torch import load

    from synthvision.stages import pretrain as pretrain_stage

    pretrain = {
        "method": "moco",
        "arch": "resnet18",
        "image_size": 32,
        "optim": TINY_OPTIM,
        "checkpoint_every": 2,
        "moco": {"dim": 8, "queue_size": 8, "mlp_hidden": 16},
    }
    killed_config = make_config(output=tmp_path / "killed", pretrain=pretrain)
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(killed_config.model_dump(mode="json")))
    generated_run(killed_config)
    process = subprocess.run(
        [sys.executable, "-c", KILL_AT_STEP_3, str(path), str(torch.get_num_threads())],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -9, process.stderr
    killed = generated_run(killed_config)
    assert killed.storage.list("pretrain/ckpt") == ["latest.json", "step-00000002.json", "step-00000002.safetensors"]
    # resumed with 2 DataLoader workers: the same batches, so the same weights as the unbroken run with none
    killed.config.pretrain.workers = 2
    report = pretrain_stage.pretrain(killed)
    assert (report.resumed_from_step, report.steps) == (2, 6)  # 12 images / 4 = 3 steps per epoch, 2 epochs

    unbroken = generated_run(make_config(output=tmp_path / "unbroken", pretrain=pretrain))
    assert pretrain_stage.pretrain(unbroken).resumed_from_step is None
    resumed, straight = (load(run.storage.read_bytes("pretrain/backbone.safetensors")) for run in (killed, unbroken))
    assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)
    assert pretrain_stage.committed(killed) == report  # committed: read back as the same report
