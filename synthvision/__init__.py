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
    from synthvision.core.config import RunConfig, load_config
    from synthvision.core.label_spaces import LabelSpace, load_label_space
    from synthvision.core.stage_table import STAGES, Stage, stage_hash
    from synthvision.run import Run

_EXPORTS = {
    "RunConfig": "synthvision.core.config",
    "load_config": "synthvision.core.config",
    "LabelSpace": "synthvision.core.label_spaces",
    "load_label_space": "synthvision.core.label_spaces",
    "Run": "synthvision.run",
    "STAGES": "synthvision.core.stage_table",
    "Stage": "synthvision.core.stage_table",
    "stage_hash": "synthvision.core.stage_table",
}
__all__ = ["STAGES", "LabelSpace", "Run", "RunConfig", "Stage", "load_config", "load_label_space", "stage_hash"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synthvision' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
