"""Training losses by their paper names: `ce` and `sce` (soft-target cross-entropy, paper A.5).

SCE = 0.5 * CE(logits, labels) + 0.5 * mean_i( -sum_c softmax(teacher_i / T)_c * log_softmax(logits_i)_c )
where the teacher logits are CLIP's zero-shot logits of the synthetic image, kept from scoring, and
T = 2 softens them. The temperature applies to the teacher only, as in the paper's code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def soft_target_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    soft_targets = torch.softmax(teacher_logits / temperature, dim=-1)
    soft = torch.sum(-soft_targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return 0.5 * F.cross_entropy(logits, labels) + 0.5 * soft


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"ce": cross_entropy, "sce": soft_target_cross_entropy}
