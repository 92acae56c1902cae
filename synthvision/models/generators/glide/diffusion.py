"""GLIDE's Gaussian diffusion: beta schedules, the respaced process, learned-range variance sampling,
and the hybrid training objective (noise MSE plus the variational bound term that learns v).

The models were trained on 1,000 steps and are sampled on a subset ("respacing"): keeping steps
S = {s_0 < s_1 < ...} of the base process defines a shorter process whose cumulative alphas are the
base's at S, so its betas are 1 - abar(s_i) / abar(s_{i-1}); the model is called with the original
step number s_i. The model predicts the noise (eps) and, in 3 more channels, v in [-1, 1] that
interpolates the log variance between the posterior's (beta tilde) and beta (Nichol & Dhariwal 2021).
Pure tensor math: the model is a callable passed in; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from synthvision.core.respacing import BASE_STEPS, respaced_steps


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


@dataclass(frozen=True)
class TrainingLosses:
    mse: torch.Tensor  # per sample
    vb: torch.Tensor  # per sample, bits per dimension (already weighted)

    @property
    def loss(self) -> torch.Tensor:
        return (self.mse + self.vb).mean()


def normal_kl(mean1: torch.Tensor, log_var1: torch.Tensor, mean2: torch.Tensor, log_var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element, in nats."""
    return 0.5 * (
        -1.0 + log_var2 - log_var1 + torch.exp(log_var1 - log_var2) + (mean1 - mean2) ** 2 * torch.exp(-log_var2)
    )


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per element for 8-bit data x in [-1, 1] (bins of width 2/255; the end bins open to
    infinity) under N(mean, exp(log_scale)^2): the decoder term of the bound at step 0."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_minus = _standard_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))


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
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
            "min_log_variance": posterior_log_variance,
            "max_log_variance": np.log(betas),
        }
        self._table = {
            name: torch.from_numpy(values) for name, values in table.items()
        }  # float64, like the reference math

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def _at(self, name: str, index: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A table entry at one reverse index, or at one per sample (a tensor of indices), shaped to
        broadcast against `like`."""
        values = self._table[name][index.cpu() if isinstance(index, torch.Tensor) else index]
        if isinstance(index, torch.Tensor):
            values = values.reshape(-1, *[1] * (like.dim() - 1))
        return values.to(device=like.device, dtype=torch.float32)

    def model_timesteps(self, index: int, batch: int, device: torch.device) -> torch.Tensor:
        """The original step number the model expects at reverse index `index`."""
        return torch.full((batch,), self.steps[index], device=device, dtype=torch.long)

    def q_sample(self, x_start: torch.Tensor, index: int | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_start noised to reverse index `index` (real guidance starts denoising from here)."""
        return (
            self._at("sqrt_alphas_cumprod", index, x_start) * x_start
            + self._at("sqrt_one_minus_alphas_cumprod", index, x_start) * noise
        )

    def predict(
        self, model_output: torch.Tensor, x: torch.Tensor, index: int | torch.Tensor, clip: bool = True
    ) -> Prediction:
        """p(x_{i-1} | x_i) from the model's eps and variance channels; x_0 is clipped to [-1, 1]
        when sampling (`clip`), not in the training loss."""
        eps, var_values = model_output.float().split(x.shape[1], dim=1)
        frac = (var_values + 1) / 2
        log_variance = frac * self._at("max_log_variance", index, x) + (1 - frac) * self._at(
            "min_log_variance", index, x
        )
        pred_xstart = (
            self._at("sqrt_recip_alphas_cumprod", index, x) * x
            - self._at("sqrt_recipm1_alphas_cumprod", index, x) * eps
        )
        if clip:
            pred_xstart = pred_xstart.clamp(-1, 1)
        return Prediction(self._posterior_mean(pred_xstart, x, index), log_variance, pred_xstart)

    def _posterior_mean(self, x_start: torch.Tensor, x: torch.Tensor, index: int | torch.Tensor) -> torch.Tensor:
        """The mean of q(x_{i-1} | x_i, x_0)."""
        return self._at("posterior_mean_coef1", index, x) * x_start + self._at("posterior_mean_coef2", index, x) * x

    def training_losses(
        self,
        model_output: torch.Tensor,
        x_start: torch.Tensor,
        x_t: torch.Tensor,
        index: torch.Tensor,
        noise: torch.Tensor,
    ) -> TrainingLosses:
        """GLIDE's (improved DDPM's) hybrid objective at per-sample steps `index` of `x_t`, noised from
        `x_start` with `noise`: the noise-prediction MSE plus the variational bound term, which trains
        only the variance channels (the mean's gradient goes through the MSE alone).

        The bound term is KL(q(x_{i-1} | x_i, x_0) || p(x_{i-1} | x_i)) in bits per dimension, and at
        index 0 the discretised decoder's negative log-likelihood. Its weight: sampling i uniformly
        estimates L_vlb / T, and L_hybrid = L_simple + (T / 1000) L_vlb_term (lambda = 0.001 at T = 1000).
        """
        eps, var_values = model_output.float().split(x_t.shape[1], dim=1)
        mse = (eps - noise).pow(2).mean(dim=(1, 2, 3))
        frozen = self.predict(torch.cat([eps.detach(), var_values], dim=1), x_t, index, clip=False)
        true_mean = self._posterior_mean(x_start, x_t, index)
        true_log_variance = self._at("min_log_variance", index, x_t)
        kl = normal_kl(true_mean, true_log_variance, frozen.mean, frozen.log_variance).mean(dim=(1, 2, 3)) / math.log(
            2.0
        )
        nll = -discretized_gaussian_log_likelihood(x_start, frozen.mean, 0.5 * frozen.log_variance).mean(
            dim=(1, 2, 3)
        ) / math.log(2.0)
        vb = torch.where(index.to(x_t.device) == 0, nll, kl) * (self.num_steps / 1000.0)
        return TrainingLosses(mse, vb)

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

    def ddim_sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        noise: Callable[[], torch.Tensor],
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Denoise `x` from the noisiest kept step by DDIM (Song et al.): each step moves to the
        (clipped) x_0 prediction along the eps re-derived from it. `eta` 0 is deterministic, as
        glide-text2im samples its upsampler; `noise()` is drawn only when eta > 0."""
        for index in reversed(range(self.num_steps)):
            prediction = self.predict(model(x, self.model_timesteps(index, x.shape[0], x.device)), x, index)
            x = self.ddim_step(prediction.pred_xstart, x, index, eta, noise if index > 0 else None)
        return x

    def ddim_step(
        self,
        x_start: torch.Tensor,
        x: torch.Tensor,
        index: int,
        eta: float = 0.0,
        noise: Callable[[], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x at reverse index `index - 1` by one DDIM step from x_0 predicted at `index`."""
        eps = (self._at("sqrt_recip_alphas_cumprod", index, x) * x - x_start) / self._at(
            "sqrt_recipm1_alphas_cumprod", index, x
        )
        alpha_bar, alpha_bar_prev = self._at("alphas_cumprod", index, x), self._at("alphas_cumprod_prev", index, x)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
        x = x_start * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        return x + sigma * noise() if noise is not None and eta > 0 else x
