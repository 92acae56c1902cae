"""GLIDE's text-conditional ADM UNet, laid out so the released `base.pt` / `upsample.pt` state dicts
load unchanged (module names, nesting and parameter shapes follow openai/glide-text2im).

A transformer encodes the prompt tokens; its last token, projected, is added to the timestep
embedding, and every attention block also attends over all token features (`encoder_kv`, its keys
and values placed before the image's own). Residual blocks use scale-shift (FiLM) conditioning and
do the down/upsampling themselves. Norms compute in float32 so the torso can run in fp16/bf16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GlideArchitecture:
    """What a checkpoint's module tree is built from (the reference's `create_model` options)."""

    image_size: int = 64
    num_channels: int = 192
    num_res_blocks: int = 3
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_head_channels: int = 64
    attention_resolutions: tuple[int, ...] = (32, 16, 8)  # feature-map sizes that get attention
    text_ctx: int = 128
    xf_width: int = 512
    xf_layers: int = 16
    xf_heads: int = 8
    n_vocab: int = 50257
    super_res: bool = False  # the upsampler: the low-resolution image enters as 3 more channels
    dropout: float = 0.1
    noise_schedule: str = "squaredcos_cap_v2"

    @property
    def attention_downsampling(self) -> set[int]:
        return {self.image_size // resolution for resolution in self.attention_resolutions}


# The released GLIDE (filtered) models (the reference's model_and_diffusion_defaults[_upsampler]).
RELEASED_BASE = GlideArchitecture()
RELEASED_UPSAMPLER = GlideArchitecture(
    image_size=256, num_res_blocks=2, channel_mult=(1, 1, 2, 2, 4, 4), super_res=True, noise_schedule="linear"
)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm over 32 groups in float32, then an optional SiLU, back in the input's dtype."""

    def __init__(self, channels: int, silu: bool):
        super().__init__(num_groups=32, num_channels=channels)
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return (F.silu(y) if self.silu else y).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm in float32, back in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(
            x.dtype
        )


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (original, unrespaced) step numbers: cosines, then sines."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _resample(x: torch.Tensor, direction: str | None) -> torch.Tensor:
    if direction == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if direction == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class ResBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        resample: str | None = None,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.resample = resample
        # Identity placeholders keep the reference's indices (in_layers.2, out_layers.3, emb_layers.1)
        self.in_layers = nn.Sequential(
            GroupNorm32(channels, silu=True), nn.Identity(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels, silu=False),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[0](x)
        h = self.in_layers[2](_resample(h, self.resample))
        x = _resample(x, self.resample)
        scale, shift = self.emb_layers(emb).to(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over pixels, with the text's keys and values prepended to the pixels' own."""

    def __init__(self, channels: int, head_channels: int, encoder_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = GroupNorm32(channels, silu=False)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.encoder_kv = nn.Conv1d(encoder_channels, channels * 2, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        # channels are grouped per head: [q k v] of head 0, then of head 1, ... (and [k v] for text)
        qkv = self.qkv(self.norm(x).reshape(b, c, -1)).reshape(b, self.heads, 3, c // self.heads, -1)
        text_kv = self.encoder_kv(text).reshape(b, self.heads, 2, c // self.heads, -1)
        q = qkv[:, :, 0].transpose(-1, -2)
        k = torch.cat([text_kv[:, :, 0], qkv[:, :, 1]], dim=-1).transpose(-1, -2)
        v = torch.cat([text_kv[:, :, 1], qkv[:, :, 2]], dim=-1).transpose(-1, -2)
        h = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, -1)
        return x + self.proj_out(h).reshape(b, c, height, width)


class Step(nn.ModuleList):
    """One UNet stage (the reference's TimestepEmbedSequential): a conv, or res blocks and attention."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, AttentionBlock):
                h = layer(h, text)
            else:
                h = layer(h)
        return h


class TextBlock(nn.Module):
    """A pre-norm transformer block (no causal mask: padding is marked by `padding_embedding`)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn = nn.Module()
        self.attn.c_qkv = nn.Linear(width, width * 3)
        self.attn.c_proj = nn.Linear(width, width)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, width * 4)
        self.mlp.c_proj = nn.Linear(width * 4, width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        # per token, channels are grouped per head: [q k v] of head 0, then head 1, ...
        qkv = (
            self.attn.c_qkv(self.ln_1(x)).reshape(b, length, self.heads, 3, width // self.heads).permute(3, 0, 2, 1, 4)
        )
        h = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, length, width)
        x = x + self.attn.c_proj(h)
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(TextBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class GlideUNet(nn.Module):
    """GLIDE's Text2ImUNet (or, with `super_res`, SuperResText2ImUNet); outputs eps and variance values."""

    def __init__(self, arch: GlideArchitecture):
        super().__init__()
        self.arch = arch
        ch = arch.num_channels
        emb_channels = ch * 4
        attention_at = arch.attention_downsampling

        def res(channels: int, out: int | None = None, resample: str | None = None) -> ResBlock:
            return ResBlock(channels, emb_channels, arch.dropout, out, resample)

        def attention(channels: int) -> AttentionBlock:
            return AttentionBlock(channels, arch.num_head_channels, arch.xf_width)

        self.time_embed = nn.Sequential(nn.Linear(ch, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels))
        in_channels = 6 if arch.super_res else 3
        width = ch * arch.channel_mult[0]
        self.input_blocks = nn.ModuleList([Step([nn.Conv2d(in_channels, width, 3, padding=1)])])
        skip_widths, ds = [width], 1
        for level, mult in enumerate(arch.channel_mult):
            for _ in range(arch.num_res_blocks):
                layers: list[nn.Module] = [res(width, ch * mult)]
                width = ch * mult
                if ds in attention_at:
                    layers.append(attention(width))
                self.input_blocks.append(Step(layers))
                skip_widths.append(width)
            if level != len(arch.channel_mult) - 1:
                self.input_blocks.append(Step([res(width, resample="down")]))
                skip_widths.append(width)
                ds *= 2
        self.middle_block = Step([res(width), attention(width), res(width)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(arch.channel_mult))):
            for i in range(arch.num_res_blocks + 1):
                layers = [res(width + skip_widths.pop(), ch * mult)]
                width = ch * mult
                if ds in attention_at:
                    layers.append(attention(width))
                if level and i == arch.num_res_blocks:
                    layers.append(res(width, resample="up"))
                    ds //= 2
                self.output_blocks.append(Step(layers))
        self.out = nn.Sequential(
            GroupNorm32(width, silu=True), nn.Identity(), nn.Conv2d(ch * arch.channel_mult[0], 6, 3, padding=1)
        )

        self.transformer = Transformer(arch.xf_width, arch.xf_layers, arch.xf_heads)
        self.final_ln = LayerNorm(arch.xf_width)
        self.token_embedding = nn.Embedding(arch.n_vocab, arch.xf_width)
        self.positional_embedding = nn.Parameter(torch.empty(arch.text_ctx, arch.xf_width))
        self.padding_embedding = nn.Parameter(torch.empty(arch.text_ctx, arch.xf_width))
        self.transformer_proj = nn.Linear(arch.xf_width, emb_channels)

    def encode_text(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(projection added to the timestep embedding, token features N x C x L for attention)."""
        x = self.token_embedding(tokens) + self.positional_embedding[None]
        x = torch.where(mask[..., None], x, self.padding_embedding[None])
        x = self.final_ln(self.transformer(x))
        return self.transformer_proj(x[:, -1]), x.permute(0, 2, 1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        low_res: torch.Tensor | None = None,
    ) -> torch.Tensor:
        dtype = self.time_embed[0].weight.dtype
        if self.arch.super_res:
            if low_res is None:
                raise ValueError("the upsampler needs `low_res`, the image to upsample")
            x = torch.cat([x, F.interpolate(low_res, x.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        text_proj, text = self.encode_text(tokens, mask)
        emb = self.time_embed(timestep_embedding(timesteps, self.arch.num_channels).to(dtype)) + text_proj
        h, skips = x.to(dtype), []
        for step in self.input_blocks:
            h = step(h, emb, text)
            skips.append(h)
        h = self.middle_block(h, emb, text)
        for step in self.output_blocks:
            h = step(torch.cat([h, skips.pop()], dim=1), emb, text)
        return self.out(h).float()
