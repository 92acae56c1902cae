"""`deployments/prefect.yaml`, written from the stage table: a deployment of every flow (`synthesize`
and one per stage row) on each work pool, so a new stage is deployed without editing YAML by hand.

    python -m flows.deployments            # rewrite deployments/prefect.yaml
    python -m flows.deployments --check    # exit 1 if it is not what the table makes (tests run this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synthvision.core.stage_table import STAGES, Stage

FILE = Path(__file__).resolve().parent.parent / "deployments" / "prefect.yaml"
HEADER = r"""# Written by `python -m flows.deployments` from the stage table (synthvision/core/stage_table.py):
# edit that module, not this file.
#
# Deployments of every synthvision flow. Deploy from the repository root:
#
#   prefect work-pool create synthvision-local --type process            # one machine
#   prefect deploy --prefect-file deployments/prefect.yaml --name '*/local'
#
#   prefect work-pool create synthvision-k8s --type kubernetes \
#       --base-job-template deployments/k8s-gpu-job-template.json          # a GPU cluster
#   prefect deploy --prefect-file deployments/prefect.yaml --name '*/k8s'
#
# Then submit a run with a validated config: `synthvision submit CONFIG --deployment synthesize/local`.
# Every flow takes one parameter, `config` (the whole run config, shown in the UI for each run).
name: synthvision
prefect-version: 3.8.8

build: null
push: null

# The `local` deployments run from the checkout they were deployed from: `prefect deploy` records
# its directory as the pull step. The `k8s` deployments run the worker image, where the project is
# installed in /opt/synthvision (infra/Dockerfile).

definitions:
  pools:
    local: &local
      name: synthvision-local
      work_queue_name: default
    k8s: &k8s
      name: synthvision-k8s
      work_queue_name: default
      job_variables:
        image: "{{ $SYNTHVISION_IMAGE }}"
        gpu_count: 1
  pull:
    image: &image
      - prefect.deployments.steps.set_working_directory:
          directory: /opt/synthvision

deployments:
"""
SYNTHESIZE = ("flows/synthesize.py:synthesize", "Prompts, generation, CLIP scoring and classifier tuning, end to end.")
POOLS = {"local": "    work_pool: *local\n", "k8s": "    work_pool: *k8s\n    pull: *image\n"}


def prefect_yaml(stages: tuple[Stage, ...] = STAGES) -> str:
    """The file's text: every flow on every pool, `synthesize` first, then the stages in table order."""
    flows = [SYNTHESIZE, *((f"flows/stages.py:{row.name}_flow", row.description) for row in stages)]
    entries = [
        f"  - name: {pool}\n    entrypoint: {entrypoint}\n    description: {json.dumps(description)}\n{where}"
        for pool, where in POOLS.items()
        for entrypoint, description in flows
    ]
    return HEADER + "".join(entries)


def main(argv: list[str]) -> int:
    expected = prefect_yaml()
    if "--check" in argv:
        if FILE.read_text() != expected:
            print(f"{FILE} is not what the stage table makes: run `python -m flows.deployments`", file=sys.stderr)
            return 1
        return 0
    FILE.write_text(expected)
    print(f"wrote {FILE} ({len(STAGES) + 1} flows x {len(POOLS)} pools)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
