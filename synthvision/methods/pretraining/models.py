"""ResNets (torchvision's, from random init), MoCo v2, and the backbone export.

The exported backbone is a plain state dict in safetensors with torchvision's key names minus the
classifier (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, ...): timm's ResNets use the same
names, so `timm.create_model("resnet50", num_classes=0).load_state_dict(...)` takes it as is, and
detection codebases that start from torchvision ResNets do too.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from safetensors.torch import save as save_safetensors
from torch import nn
from torchvision import models

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101")


def build_resnet(arch: str, num_classes: int) -> models.ResNet:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: use one of {ARCHITECTURES}")
    return getattr(models, arch)(weights=None, num_classes=num_classes)


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's tensors (a ResNet, or MoCo's query encoder) without the classifier or MLP head."""
    if isinstance(model, MoCo):
        model = model.encoder_q
    return {
        key: value.detach().cpu().contiguous() for key, value in model.state_dict().items() if not key.startswith("fc.")
    }


def export_backbone(model: nn.Module, metadata: dict[str, str]) -> bytes:
    return save_safetensors(backbone_state(model), metadata=metadata)


def set_batch_norm_frozen(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode: it normalises with its running statistics and leaves them
    unchanged (call after `model.train()`; its affine weights still train)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class MoCo(nn.Module):
    """MoCo v2 (He et al. 2020; Chen et al. 2020): a query encoder trained by InfoNCE against a key
    encoder that follows it by momentum, with a queue of past keys as negatives and an MLP head.
    (Shuffled BN across GPUs is not done: each device normalises its own batch.)"""

    def __init__(
        self,
        arch: str,
        dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        hidden: int = 2048,
    ):
        super().__init__()
        self.momentum, self.temperature = momentum, temperature
        self.encoder_q = build_resnet(arch, num_classes=dim)
        features = self.encoder_q.fc.in_features
        self.encoder_q.fc = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for parameter in self.encoder_k.parameters():
            parameter.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query, parameter by parameter."""
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest queue entries by `keys` (N x dim), wrapping around the end."""
        size = self.queue.shape[1]
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[:, slots] = keys.T
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    def contrastive_logits(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """N x (1 + K): the positive key first, then the queue, over the temperature."""
        positive = (q * k).sum(dim=1, keepdim=True)
        negative = q @ self.queue.clone().detach()
        return torch.cat([positive, negative], dim=1) / self.temperature

    def forward(self, view_q: torch.Tensor, view_k: torch.Tensor) -> torch.Tensor:
        """The InfoNCE loss of one step (the positive is class 0); updates the key encoder and queue."""
        q = F.normalize(self.encoder_q(view_q), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = F.normalize(self.encoder_k(view_k), dim=1)
        logits = self.contrastive_logits(q, k)
        self.enqueue(k)
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
