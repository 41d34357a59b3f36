"""The transformer backbone shared by masked-diffusion and autoregressive models.

A Qwen2/LLaMA-style decoder stack: RMSNorm, rotary embeddings driven by explicit position
ids (so left padding gives every token its true position), grouped-query attention with
optional q/k/v bias, SwiGLU MLP, tied or untied output head. Attention runs through
``F.scaled_dot_product_attention`` with a real padding mask; it is bidirectional for masked
diffusion (``config.causal = False``), block-causal for block diffusion (``config.block_size``,
:mod:`demask.model.blocks`) and causal for autoregressive models.

Module names equal those of transformers' ``Qwen2ForCausalLM`` (``model.layers.{i}.self_attn.q_proj``
...), so Qwen2 / Dream / DiffuCoder checkpoints load without renaming.

Running on a slice of positions against cached keys/values (the decoding engine's prefix and
dual caches, and autoregressive decoding) goes through :class:`KVCache`: pass a cache and the
absolute index ``cache_start`` of the first input position; the slice's fresh keys/values are
written into the cache in place and the queries attend to every cached position that the
attention mask allows. What the cache does *not* do: it never decides what is stale; the
decoder refreshes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from demask.model.blocks import UNWRITTEN, attention_blocks, block_causal_keep
from demask.model.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for RoPE, computed in float32 from explicit positions. (B, S) -> 2 x (B, S, D)."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim)
    )
    freqs = position_ids.float()[..., None] * inv_freq  # (B, S, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (B, S, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, S, D); cos/sin: (B, S, D)."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + _rotate_half(x) * sin


def mask_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Rotary positions of left-padded rows: ``cumsum(mask) - 1``, padding clamped at 0.
    (B, T) bool -> (B, T) long."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class KVCache:
    """Keys and values of every layer for a whole sequence, written in place.

    ``k[i]``/``v[i]``: (B, H_kv, T, D), allocated by the first forward that uses the cache.
    ``length`` is T, the number of positions the cache covers. ``positions`` (B, T): the
    rotary position of every slot written so far (:data:`~demask.model.blocks.UNWRITTEN`
    elsewhere), kept for block-causal models, whose mask needs the keys' positions.
    """

    def __init__(self, num_layers: int, length: int) -> None:
        self.length = length
        self.k: list[torch.Tensor | None] = [None] * num_layers
        self.v: list[torch.Tensor | None] = [None] * num_layers
        self.positions: torch.Tensor | None = None

    def write_positions(self, start: int, positions: torch.Tensor) -> torch.Tensor:
        """Record the (B, S) rotary positions written at [start, start + S); return all (B, T)."""
        if self.positions is None:
            self.positions = torch.full(
                (positions.shape[0], self.length), UNWRITTEN, dtype=torch.long, device=positions.device
            )
        self.positions[:, start : start + positions.shape[1]] = positions
        return self.positions

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (B, H_kv, S, D) keys/values at [start, start + S) and return the full cache."""
        ck, cv = self.k[layer], self.v[layer]
        if ck is None or cv is None:  # allocated together
            b, h, _, d = k.shape
            ck = self.k[layer] = k.new_zeros(b, h, self.length, d)
            cv = self.v[layer] = v.new_zeros(b, h, self.length, d)
        end = start + k.shape[2]
        if end > self.length:
            raise ValueError(f"cache holds {self.length} positions, write ends at {end}")
        ck[:, :, start:end] = k
        cv[:, :, start:end] = v
        return ck, cv

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows ``rows`` (used when finished rows leave a batch)."""
        self.k = [None if t is None else t[rows] for t in self.k]
        self.v = [None if t is None else t[rows] for t in self.v]
        self.positions = None if self.positions is None else self.positions[rows]

    def gather(self, rows: torch.Tensor) -> KVCache:
        """A new cache holding a copy of the batch rows ``rows`` (writes to it do not reach
        this one)."""
        sub = KVCache(len(self.k), self.length)
        sub.k = [None if t is None else t[rows] for t in self.k]
        sub.v = [None if t is None else t[rows] for t in self.v]
        sub.positions = None if self.positions is None else self.positions[rows]
        return sub


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.head_dim is not None  # ModelConfig.__post_init__ fills it in
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        cache: KVCache | None,
        layer: int,
        cache_start: int,
    ) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, S, D)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, cache_start, k, v)  # (B, H_kv, T, D)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=self.num_kv_heads != self.num_heads
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, attn_mask, is_causal, cache, layer, cache_start):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, is_causal, cache, layer, cache_start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.input_vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Transformer(nn.Module):
    """The model: ``forward(input_ids, attention_mask, position_ids) -> logits`` (B, S, V).

    Logits are returned as the checkpoint computes them; for a shifted model (Dream,
    DiffuCoder, any autoregressive model) position i-1 predicts token i. Use
    :func:`token_logits` to get logits aligned with the tokens they predict.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            if config.input_vocab_size != config.vocab_size:
                raise ValueError("tied embeddings need embedding_size == vocab_size")
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """Normal(0, std) linear/embedding weights, zero biases, unit norms."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std, generator=generator)
                bias = getattr(module, "bias", None)
                if bias is not None:
                    nn.init.zeros_(bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def new_cache(self, length: int) -> KVCache:
        return KVCache(self.config.num_layers, length)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        cache_start: int = 0,
    ) -> torch.Tensor:
        """Logits for ``input_ids`` (B, S).

        attention_mask: (B, T) with 1/True for real tokens and 0/False for padding, over the
            keys: T = S without a cache, T = cache.length with one. Or a (B, 1, S, T) bool
            mask used as is (True = attend; block diffusion's two-stream training form),
            which needs explicit ``position_ids``.
        position_ids: (B, S); default ``cumsum(attention_mask) - 1`` over the input positions
            (correct for left padding), or ``cache_start + arange(S)`` without a mask. A
            block-causal model counts its blocks on them (:mod:`demask.model.blocks`).
        cache / cache_start: run on positions [cache_start, cache_start + S) of a longer
            sequence; their keys/values are written into ``cache`` and the queries attend to
            all of its positions.
        """
        b, s = input_ids.shape
        total = cache.length if cache is not None else s
        limit = self.config.max_position_embeddings
        # A full (B, 1, S, T) mask states its own geometry (block diffusion's two streams
        # hold the same positions twice), so only a plain sequence is held to the context.
        if total > limit and not (attention_mask is not None and attention_mask.dim() == 4):
            raise ValueError(
                f"sequence of {total} tokens is longer than the model's context of {limit} "
                "(max_position_embeddings); shorten the prompt or the completion length"
            )
        device = input_ids.device
        if attention_mask is not None:
            attention_mask = attention_mask.to(device=device, dtype=torch.bool)
            given_4d = attention_mask.dim() == 4
            if attention_mask.shape != ((b, 1, s, total) if given_4d else (b, total)):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(b, total)} "
                    f"(batch, key positions) or {(b, 1, s, total)} (a full boolean mask)"
                )
            if given_4d and position_ids is None:
                raise ValueError("a full (B, 1, S, T) attention_mask needs explicit position_ids")
        if position_ids is None:
            if attention_mask is not None:
                position_ids = mask_positions(attention_mask)[:, cache_start : cache_start + s]
            else:
                position_ids = torch.arange(cache_start, cache_start + s, device=device).expand(b, s)
        key_positions = position_ids
        if cache is not None and self.config.block_size is not None:
            key_positions = cache.write_positions(cache_start, position_ids)
        attn_mask, is_causal = self._attention_mask(attention_mask, position_ids, key_positions, total, cache_start)
        x = self.model.embed_tokens(input_ids)
        assert self.config.head_dim is not None  # ModelConfig.__post_init__ fills it in
        cos, sin = rotary_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, attn_mask, is_causal, cache, i, cache_start)
        return self.lm_head(self.model.norm(x))

    def _attention_mask(self, attention_mask, position_ids, key_positions, total, cache_start):
        """A boolean (B, 1, S, T) mask for SDPA (True = attend), or None / is_causal."""
        if attention_mask is not None and attention_mask.dim() == 4:
            return attention_mask, False
        cfg = self.config
        b, s = position_ids.shape
        device = position_ids.device
        causal, blocks = cfg.causal, cfg.block_size is not None
        if attention_mask is None and not blocks and (not causal or (s == total and cache_start == 0)):
            return None, causal and s > 1
        q_abs = torch.arange(cache_start, cache_start + s, device=device)[:, None]  # (S, 1)
        k_abs = torch.arange(total, device=device)[None, :]  # (1, T)
        keep = torch.ones(b, 1, s, total, dtype=torch.bool, device=device)
        if attention_mask is not None:
            keep = keep & attention_mask[:, None, None, :]
        if causal:
            keep = keep & (k_abs <= q_abs)
        if blocks:
            assert cfg.block_size is not None
            q_blocks = attention_blocks(position_ids, cfg.block_size, cfg.shift_logits)
            k_blocks = attention_blocks(key_positions.expand(b, -1), cfg.block_size, cfg.shift_logits)
            keep = keep & block_causal_keep(q_blocks, k_blocks)
        # Every query may see itself, so rows of padding never attend to nothing (NaN).
        return keep | (k_abs == q_abs), False


def token_logits(logits: torch.Tensor, shifted: bool) -> torch.Tensor:
    """Align logits with the tokens they predict: out[:, i] scores token i.

    For a shifted model the logits at i-1 predict token i, so
    ``out = cat([logits[:, :1], logits[:, :-1]])`` (position 0, always a prompt token,
    reuses its own row as in Dream).
    """
    if not shifted:
        return logits
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
