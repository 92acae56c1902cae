"""GLIDE's Gaussian diffusion: beta schedules, timestep respacing and learned-range variance sampling.

The models were trained on 1,000 steps and are sampled on a subset ("respacing"): keeping steps
S = {s_0 < s_1 < ...} of the base process defines a shorter process whose cumulative alphas are the
base's at S, so its betas are 1 - abar(s_i) / abar(s_{i-1}); the model is called with the original
step number s_i. The model predicts the noise (eps) and, in 3 more channels, v in [-1, 1] that
interpolates the log variance between the posterior's (beta tilde) and beta (Nichol & Dhariwal 2021).
Pure tensor math: no model, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

BASE_STEPS = 1000

# GLIDE's 27-step upsampler schedule: sections of 10, 10, 3, 2 and 2 steps over five fifths of the
# process, with the noisiest step (999) replaced by 997 to reduce artefacts from it.
FAST27 = "fast27"


def beta_schedule(name: str, steps: int = BASE_STEPS) -> np.ndarray:
    """`linear` (Ho et al., rescaled to `steps`; the upsampler) or `squaredcos_cap_v2` (cosine; the base)."""
    if name == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    if name == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)])
    raise ValueError(f"unknown noise schedule {name!r}: use 'linear' or 'squaredcos_cap_v2'")


def respaced_steps(spec: str, steps: int = BASE_STEPS) -> list[int]:
    """The base steps kept by a respacing spec, ascending.

    - `"100"` or `"10,10,3"`: split the process into as many equal sections as there are numbers and
      take that many evenly strided steps from each (first and last step of a section included,
      positions rounded half to even).
    - `"ddim50"`: the integer stride that gives exactly 50 steps, from step 0.
    - `"fast27"`: GLIDE's upsampler schedule (see FAST27).
    """
    if spec == FAST27:
        kept = set(respaced_steps("10,10,3,2,2", steps))
        kept.remove(steps - 1)
        kept.add(steps - 3)
        return sorted(kept)
    if spec.startswith("ddim"):
        wanted = int(spec[len("ddim"):])
        for stride in range(1, steps):
            if len(range(0, steps, stride)) == wanted:
                return list(range(0, steps, stride))
        raise ValueError(f"respacing {spec!r}: no integer stride gives exactly {wanted} of {steps} steps")
    try:
        counts = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(f"respacing {spec!r}: use a step count ('100'), section counts ('10,10,3'), 'ddimN' or 'fast27'") from None
    size, extra = divmod(steps, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        section = size + (1 if i < extra else 0)
        if not 0 < count <= section:
            raise ValueError(f"respacing {spec!r}: cannot take {count} steps from a section of {section}")
        stride = (section - 1) / (count - 1) if count > 1 else 1
        kept += [start + round(j * stride) for j in range(count)]
        start += section
    return kept


@dataclass(frozen=True)
class Prediction:
    mean: torch.Tensor
    log_variance: torch.Tensor
    pred_xstart: torch.Tensor


class SpacedDiffusion:
    """The reverse process on the kept steps; index i (0 = least noisy) runs the model at `steps[i]`."""

    def __init__(self, schedule: str, respacing: str, base_steps: int = BASE_STEPS):
        base_alphas_cumprod = np.cumprod(1.0 - beta_schedule(schedule, base_steps))
        self.steps = respaced_steps(respacing, base_steps)
        alphas_cumprod = base_alphas_cumprod[self.steps]
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        betas = 1.0 - alphas_cumprod / alphas_cumprod_prev
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # the posterior variance is 0 at the first step: its log is clipped to the next step's
        posterior_log_variance = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        table = {
            "alphas_cumprod": alphas_cumprod,
            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
            "min_log_variance": posterior_log_variance,
            "max_log_variance": np.log(betas),
        }
        self._table = {name: torch.from_numpy(values) for name, values in table.items()}  # float64, like the reference math

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def _at(self, name: str, index: int, like: torch.Tensor) -> torch.Tensor:
        return self._table[name][index].to(device=like.device, dtype=torch.float32)

    def model_timesteps(self, index: int, batch: int, device: torch.device) -> torch.Tensor:
        """The original step number the model expects at reverse index `index`."""
        return torch.full((batch,), self.steps[index], device=device, dtype=torch.long)

    def q_sample(self, x_start: torch.Tensor, index: int, noise: torch.Tensor) -> torch.Tensor:
        """x_start noised to reverse index `index` (real guidance starts denoising from here)."""
        return self._at("sqrt_alphas_cumprod", index, x_start) * x_start + self._at("sqrt_one_minus_alphas_cumprod", index, x_start) * noise

    def predict(self, model_output: torch.Tensor, x: torch.Tensor, index: int) -> Prediction:
        """p(x_{i-1} | x_i) from the model's eps and variance channels; x_0 is clipped to [-1, 1]."""
        eps, var_values = model_output.float().split(x.shape[1], dim=1)
        frac = (var_values + 1) / 2
        log_variance = frac * self._at("max_log_variance", index, x) + (1 - frac) * self._at("min_log_variance", index, x)
        pred_xstart = (self._at("sqrt_recip_alphas_cumprod", index, x) * x - self._at("sqrt_recipm1_alphas_cumprod", index, x) * eps).clamp(-1, 1)
        mean = self._at("posterior_mean_coef1", index, x) * pred_xstart + self._at("posterior_mean_coef2", index, x) * x
        return Prediction(mean, log_variance, pred_xstart)

    def sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        noise: Callable[[], torch.Tensor],
        start: int | None = None,
    ) -> torch.Tensor:
        """Denoise `x` from reverse index `start - 1` (default: the noisiest) down to 0.

        `model(x, timesteps)` returns eps and variance channels; `noise()` draws the per-step noise
        (from the caller's per-image generators, so an image depends on its seed only)."""
        start = self.num_steps if start is None else start
        for index in reversed(range(start)):
            prediction = self.predict(model(x, self.model_timesteps(index, x.shape[0], x.device)), x, index)
            x = prediction.mean
            if index > 0:  # no noise on the last step
                x = x + torch.exp(0.5 * prediction.log_variance) * noise()
        return x
