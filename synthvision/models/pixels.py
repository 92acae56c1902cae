"""A model's preprocessing in two parts: per image where the CPU workers decode, to uint8 pixels; per
batch where the model runs, to its float input.

open_clip's transform ends with ToTensor and Normalize. Per image those are a dozen small torch calls,
each holding the GIL that a GPU node's decoding threads share (README: Benchmarks, `gil_work.py`),
and their float32 output is four times the bytes a copy to the GPU moves. So the transform is split at
its ToTensor: the steps before it (resize, crop: Pillow, which releases the GIL) run per image and
give uint8 HWC arrays; ToTensor's scaling and the steps after it run once per batch, on the model's
device. They are elementwise, so the floats are the ones the whole transform gives, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import Compose, ToTensor


@dataclass(frozen=True)
class Pixels:
    image_steps: Callable[[Image.Image], Image.Image]  # before ToTensor: PIL to PIL
    batch_steps: Callable[[torch.Tensor], torch.Tensor]  # after it: N x C x H x W floats in [0, 1]

    @classmethod
    def split(cls, preprocess: Compose) -> Pixels:
        """`preprocess` (a torchvision Compose with one ToTensor, as open_clip's) in its two parts."""
        steps = list(preprocess.transforms)
        at = [i for i, step in enumerate(steps) if isinstance(step, ToTensor)]
        if len(at) != 1:
            raise ValueError(f"a preprocessing to split needs exactly one ToTensor step: {preprocess}")
        return cls(Compose(steps[: at[0]]), Compose(steps[at[0] + 1 :]))

    def image(self, image: Image.Image) -> np.ndarray:
        """One image's pixels (H x W x 3 uint8), in a CPU worker. Converted to RGB only where the steps
        left another mode (open_clip's convert already; `convert` would copy an RGB image again)."""
        image = self.image_steps(image)
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))

    @staticmethod
    def stack(images: list[np.ndarray]) -> torch.Tensor:
        """A batch of `image`'s outputs: N x H x W x 3 uint8, on the CPU."""
        return torch.from_numpy(np.stack(images))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """A few images' uint8 batch, made here (a `stack` of their `image`s)."""
        return self.stack([self.image(image) for image in images])

    def floats(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's input (N x 3 x H x W floats) from a `stack`, on whatever device it is."""
        return self.batch_steps(batch.permute(0, 3, 1, 2).float().div(255))

    def of(self, images: list[Image.Image]) -> torch.Tensor:
        """The whole preprocessing of a few images, here: the model's input."""
        return self.floats(self.batch(images))
