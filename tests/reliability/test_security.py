"""Security: a run made with (fake) credentials leaks them nowhere: not in its console output, its
files on S3, nor in what Prefect keeps of it (parameters, logs, artifacts). Weights are written as
safetensors only, and the code never unpickles: `torch.load` always with `weights_only=True`."""

from __future__ import annotations

import ast
import json

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter, LogFilter

from synthvision.core.config import load_config
from synthvision.run import Run
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET, REPO
from tests.reliability.harness import check_complete, tail

SECRETS = (FAKE_KEY_ID, FAKE_SECRET)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


@pytest.mark.slow
def test_no_credentials_in_any_output_of_a_run(launcher, s3_bucket, tmp_path, colours_file):
    url, options = s3_bucket
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_name": "secrets",
                "output": f"{url}/run",
                "storage_options": options,
                "label_space": str(colours_file),
                "generator": {"backend": "tiny", "steps": 2, "resolution": 32},
                "shards": {"images_per_class": 2, "shard_size": 2},
                "clip": {"model": "tiny"},
                "evaluation": {"demo_test_set": {"per_class": 2, "size": 32}},
                "orchestration": {"max_workers": 1, "gpu_limit": None},
            }
        )
    )
    assert launcher.run(["run", str(config)]) == 0
    outputs = {"console": tail(launcher.logs / f"cli-{launcher.count:03d}.log", 10**7).encode()}

    run = Run(load_config(config))
    check_complete(run)
    files = run.storage.fs.find(run.storage.root)
    assert len(files) > 10
    outputs.update({path: blob for path, blob in run.storage.fs.cat(files).items()})
    assert not [path for path in files if path.endswith(PICKLE_SUFFIXES)]  # weights go out as safetensors

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name={"like_": "secrets"}))
        assert flow_runs
        ids = [flow_run.id for flow_run in flow_runs]
        outputs["flow runs"] = json.dumps([flow_run.model_dump(mode="json") for flow_run in flow_runs]).encode()
        logs = client.read_logs(log_filter=LogFilter(flow_run_id={"any_": ids}))
        outputs["logs"] = json.dumps([log.model_dump(mode="json") for log in logs]).encode()
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id={"any_": ids}))
        assert artifacts
        outputs["artifacts"] = json.dumps([artifact.model_dump(mode="json") for artifact in artifacts]).encode()

    leaks = [(where, secret) for where, blob in outputs.items() for secret in SECRETS if secret.encode() in blob]
    assert not leaks
    assert (
        FAKE_KEY_ID.encode() not in outputs["flow runs"] and b"endpoint_url" in outputs["flow runs"]
    )  # the parameters were there to search


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == name
    ]


def test_the_code_never_unpickles():
    sources = [p for folder in ("synthvision", "tasks", "flows", "benchmarks") for p in (REPO / folder).rglob("*.py")]
    assert len(sources) > 40
    for path in sources:
        tree = ast.parse(path.read_text())
        imported = {
            alias.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for alias in n.names
        }
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not ({"pickle", "cPickle", "dill", "joblib"} & (imported | modules)), f"{path}: imports a pickle library"
        for call in _calls(tree, "load"):
            if isinstance(call.func.value, ast.Name) and call.func.value.id == "torch":
                weights_only = [k for k in call.keywords if k.arg == "weights_only"]
                assert weights_only and getattr(weights_only[0].value, "value", None) is True, (
                    f"{path}:{call.lineno}: torch.load without weights_only=True"
                )
