"""Training losses by their paper names: `ce` and `sce` (soft-target cross-entropy, paper A.5).

    loss = w * soft + (1 - w) * hard
    hard = CE(logits, labels), with label smoothing e: (1 - e) * NLL + e * mean over classes of -log p
    soft = mean_i( -sum_c softmax(teacher_i / T)_c * log_softmax(logits_i)_c )

with w = 0 for `ce` and 0.5 for `sce`. The teacher logits are CLIP's zero-shot logits of the synthetic
image (kept from scoring) and T = 2 softens them; the temperature applies to the teacher only. With
hard pseudo-labels, `soft` is CE against the teacher's top class instead. All as in the paper's code
(its `--sl 0.5`, `--sl_T`, `--ls` and `--hard_pseudo_label`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SOFT_WEIGHT = {"ce": 0.0, "sce": 0.5}


@dataclass(frozen=True)
class Loss:
    name: str  # ce or sce
    temperature: float = 2.0
    label_smoothing: float = 0.0
    hard_pseudo_labels: bool = False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        weight = SOFT_WEIGHT[self.name]
        if weight == 0.0:
            return hard
        if self.hard_pseudo_labels:
            soft = F.cross_entropy(logits, teacher_logits.argmax(dim=-1))
        else:
            targets = torch.softmax(teacher_logits / self.temperature, dim=-1)
            soft = torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return weight * soft + (1 - weight) * hard
