"""The learned unmasking policy's network (arXiv 2512.09106, section 4 of the training notes).

One DiT-style block over the completion positions, ~300K parameters::

    token stream   h_k  = Linear(1, d)(c_k)              c_k: the dLLM's top-1 probability
    condition      z_k  = Emb(m_k) + MLP(sinusoid(t))      m_k: still masked; t = NFE / L
    block          adaLN-Zero: scale/shift/gate from z_k (zero-initialised), then
                   h += g1 * Attn(RoPE, 2 heads)(LN(h) * (1 + s1) + b1)
                   h += g2 * FFN(GELU, 512)(LN(h) * (1 + s2) + b2)
    output         logit_k = Linear(d, 1)(LN(h_k))       weight 0, bias -2 at initialisation

so every position starts at ``sigmoid(-2 / tau) = 0.119`` (tau = 1). The network sees the
whole sequence; the decoder applies it to the current block (:class:`LearnedPolicy`).
A policy is its own small checkpoint: ``config.json`` (:class:`PolicyNetConfig`, with the
block length and generation length it was trained for) and ``model.safetensors``;
:func:`save_policy` / :func:`load_policy`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from demask.model.transformer import apply_rotary, rotary_cos_sin

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
KIND = "demask-unmasking-policy"


@dataclass(frozen=True)
class PolicyNetConfig:
    hidden_size: int = 128
    intermediate_size: int = 512
    num_heads: int = 2
    time_frequencies: int = 128
    rope_theta: float = 10000.0
    output_bias: float = -2.0
    tau: float = 1.0
    """Temperature of the Bernoulli probabilities: p = sigmoid(logit / tau)."""
    block_length: int | None = None
    """The block length the policy was trained for; None: full diffusion (one block, the whole
    completion, any length). Decoding other blocks is refused."""
    gen_length: int | None = None
    """The generation length it was trained for (informational: t = NFE / L transfers)."""
    trained_on: str | None = None
    """The dLLM it was trained with (informational)."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must split into {self.num_heads} heads of an even size (RoPE)"
            )
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(A,) times in [0, 1+] -> (A, dim) sinusoidal features (DiT's timestep embedding, t * 1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = (t.float() * 1000.0)[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class PolicyNet(nn.Module):
    """``forward(masked, confidence, time) -> (A, L) logits`` (module docstring)."""

    def __init__(self, config: PolicyNetConfig = PolicyNetConfig()) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.token = nn.Linear(1, d)
        self.mask_embed = nn.Embedding(2, d)
        self.time_mlp = nn.Sequential(nn.Linear(config.time_frequencies, d), nn.SiLU(), nn.Linear(d, d))
        self.adaln = nn.Linear(d, 6 * d)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ffn = nn.Sequential(
            nn.Linear(d, config.intermediate_size), nn.GELU(), nn.Linear(config.intermediate_size, d)
        )
        self.out_norm = nn.LayerNorm(d, eps=1e-6)
        self.out = nn.Linear(d, 1)
        nn.init.zeros_(self.adaln.weight)  # adaLN-Zero: the block starts as the identity
        nn.init.zeros_(self.adaln.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, config.output_bias)

    def forward(self, masked: torch.Tensor, confidence: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """masked (A, L) bool, confidence (A, L) float, time (A,) -> logits (A, L) float32."""
        cfg = self.config
        a, length = masked.shape
        h = self.token(confidence.float()[..., None])  # (A, L, d)
        cond = self.mask_embed(masked.long()) + self.time_mlp(sinusoid(time, cfg.time_frequencies))[:, None, :]
        s1, b1, g1, s2, b2, g2 = self.adaln(F.silu(cond)).chunk(6, dim=-1)
        x = self.norm1(h) * (1 + s1) + b1
        q, k, v = self.qkv(x).view(a, length, 3, cfg.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (A, H, L, Dh)
        positions = torch.arange(length, device=masked.device)[None, :].expand(a, length)
        cos, sin = rotary_cos_sin(positions, q.shape[-1], cfg.rope_theta, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(a, length, -1)
        h = h + g1 * self.proj(attn)
        h = h + g2 * self.ffn(self.norm2(h) * (1 + s2) + b2)
        return self.out(self.out_norm(h)).squeeze(-1).float()

    def probabilities(self, masked: torch.Tensor, confidence: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """``sigmoid(logit / tau)``, (A, L)."""
        return torch.sigmoid(self(masked, confidence, time) / self.config.tau)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_policy(net: PolicyNet, directory: str | Path, *, dtype: torch.dtype | None = None, **extra: Any) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; ``extra`` keys go
    into config.json beside the network's config (e.g. the training recipe's name). ``dtype``
    stores the weights in another precision (``torch.float16`` halves a shipped policy);
    :func:`load_policy` always computes in fp32."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / (WEIGHTS_FILE + ".tmp")))
    (out / (CONFIG_FILE + ".tmp")).write_text(
        json.dumps({"kind": KIND, **asdict(net.config), **extra}, indent=1) + "\n"
    )
    os.replace(out / (WEIGHTS_FILE + ".tmp"), out / WEIGHTS_FILE)  # weights first: config.json marks it complete
    os.replace(out / (CONFIG_FILE + ".tmp"), out / CONFIG_FILE)
    return out


def load_policy(directory: str | Path, device: str | torch.device = "cpu") -> PolicyNet:
    """A policy written by :func:`save_policy`; a missing file or another kind of checkpoint is
    a clear error."""
    from safetensors.torch import load_file

    src = Path(directory)
    config_path, weights_path = src / CONFIG_FILE, src / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: a learned policy is a folder with {CONFIG_FILE} and {WEIGHTS_FILE} "
                "(demask policy-train writes one)"
            )
    raw = json.loads(config_path.read_text())
    if raw.get("kind") != KIND:
        raise ValueError(
            f"{config_path} is not an unmasking policy (kind {raw.get('kind')!r}, expected {KIND!r}); "
            "policy_options.path must name a policy folder, not a model checkpoint"
        )
    fields = set(PolicyNetConfig.__dataclass_fields__)
    net = PolicyNet(PolicyNetConfig(**{k: v for k, v in raw.items() if k in fields}))
    net.load_state_dict(load_file(str(weights_path)))  # copied into the fp32 parameters whatever the stored dtype
    return net.to(device).eval()
