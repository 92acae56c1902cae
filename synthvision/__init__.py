"""synthvision: a label space in, a filtered, trainable synthetic image dataset out (He et al., ICLR 2023).

The few things a user of the library calls:

    from synthvision import load_config, Run
    run = Run(load_config("configs/demo.yaml"))
    for row in run.status(): print(row.stage, row.committed, "/", row.planned)

`STAGES` is the table of stages, `stage_hash` what ties an output to the config that made it. Names
load on first use, so `import synthvision` costs nothing (no torch until a model is needed).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthvision.config import RunConfig, load_config
    from synthvision.label_spaces import LabelSpace, load_label_space
    from synthvision.run import Run
    from synthvision.stages import STAGES, Stage, stage_hash

_EXPORTS = {
    "RunConfig": "synthvision.config",
    "load_config": "synthvision.config",
    "LabelSpace": "synthvision.label_spaces",
    "load_label_space": "synthvision.label_spaces",
    "Run": "synthvision.run",
    "STAGES": "synthvision.stages",
    "Stage": "synthvision.stages",
    "stage_hash": "synthvision.stages",
}
__all__ = ["STAGES", "LabelSpace", "Run", "RunConfig", "Stage", "load_config", "load_label_space", "stage_hash"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synthvision' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
