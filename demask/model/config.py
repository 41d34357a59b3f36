"""The backbone's configuration, and its translation to and from Hugging Face config.json.

Three config.json dialects are read: Qwen2 / Dream / DiffuCoder (``model_type`` "qwen2" or
"Dream"), LLaMA ("llama"), and LLaDA's OLMo-style keys ("llada"). demask writes its own
models in the Qwen2 dialect with ``model_type: "demask"`` plus the keys below that say how
the model is run (``causal``, ``shift_logits``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Sizes and switches of the transformer backbone."""

    vocab_size: int = 512
    """Rows of the output head (logits per position)."""
    hidden_size: int = 128
    intermediate_size: int = 384
    """Width of the SwiGLU MLP."""
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4
    """Fewer than num_heads gives grouped-query attention."""
    head_dim: int | None = None
    """Defaults to hidden_size // num_heads."""
    max_position_embeddings: int = 1024
    """The context: a sequence longer than this is refused."""
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    qkv_bias: bool = False
    """Bias on the q/k/v projections (Qwen2 and Dream have it, LLaMA and LLaDA do not)."""
    tie_word_embeddings: bool = False
    embedding_size: int | None = None
    """Rows of the input embedding when it differs from vocab_size (LLaDA pads it)."""
    causal: bool = False
    """True: autoregressive (causal attention). False: masked diffusion (bidirectional, or
    block-causal with ``block_size``)."""
    block_size: int | None = None
    """Block diffusion: attention is bidirectional inside blocks of this many positions and
    causal across them (see :mod:`demask.model.blocks`); None: full attention. Needs
    ``causal`` false."""
    shift_logits: bool = True
    """True (Dream, DiffuCoder): the logits at position i-1 predict token i.
    False (LLaDA, autoregressive use): the logits at position i predict token i."""
    mask_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    architecture: str = "demask"
    """Where the weights came from: "demask", "qwen2", "dream", "llama" or "llada"."""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    """Keys of the source config.json that the backbone does not use (kept on save)."""

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads}) for grouped-query attention"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) is not divisible by num_heads "
                    f"({self.num_heads}); set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_heads
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.block_size is not None:
            if self.block_size <= 0:
                raise ValueError(
                    f"ModelConfig.block_size must be positive (or null: full attention), got {self.block_size}"
                )
            if self.causal:
                raise ValueError(
                    f"block_size={self.block_size} asks for block-causal attention but causal is true; "
                    "set causal false (a causal model is block size 1 already)"
                )
        if self.embedding_size is not None and self.embedding_size < self.vocab_size:
            raise ValueError(f"embedding_size ({self.embedding_size}) is smaller than vocab_size ({self.vocab_size})")

    @property
    def attention(self) -> str:
        """ "causal", "bidirectional" or "block-causal (B)", for messages."""
        if self.causal:
            return "causal"
        return "bidirectional" if self.block_size is None else f"block-causal (blocks of {self.block_size})"

    @property
    def input_vocab_size(self) -> int:
        return self.embedding_size or self.vocab_size

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """Build a config from a config.json dict of any supported dialect."""
        model_type = str(raw.get("model_type", "")).lower()
        archs = [a.lower() for a in raw.get("architectures") or []]
        if model_type == "llada" or any("llada" in a for a in archs) or "d_model" in raw:
            return cls._from_llada(raw)
        known = {"qwen2": "qwen2", "dream": "dream", "llama": "llama", "demask": "demask"}
        if model_type not in known:
            raise ValueError(
                f"unknown architecture in config.json: model_type={raw.get('model_type')!r}, "
                f"architectures={raw.get('architectures')!r}; demask loads Qwen2, Dream/DiffuCoder, "
                "LLaMA, LLaDA and its own checkpoints (model_type one of "
                f"{sorted(known)} or 'llada')"
            )
        arch = known[model_type]
        used = {
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "rms_norm_eps",
            "rope_theta",
            "tie_word_embeddings",
            "mask_token_id",
            "pad_token_id",
            "eos_token_id",
            "bos_token_id",
            "model_type",
            "causal",
            "block_size",
            "shift_logits",
            "qkv_bias",
            "attention_bias",
            "embedding_size",
            "rope_parameters",
            "rope_scaling",
            "mlp_bias",
            "architectures",
            "hidden_act",
        }
        heads = raw["num_attention_heads"]
        # Qwen2 and Dream always carry q/k/v bias; LLaMA's is `attention_bias` (also o_proj,
        # which we do not support: refuse it rather than silently dropping weights).
        if arch == "llama":
            if raw.get("attention_bias", False):
                raise ValueError("LLaMA configs with attention_bias=true are not supported")
            qkv_bias = False
        else:
            qkv_bias = raw.get("qkv_bias", arch in ("qwen2", "dream"))
        if raw.get("mlp_bias", False):
            raise ValueError("configs with mlp_bias=true are not supported")
        default_causal = arch in ("qwen2", "llama")
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=raw.get("num_key_value_heads") or heads,
            head_dim=raw.get("head_dim"),
            max_position_embeddings=raw.get("max_position_embeddings", 2048),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            rope_theta=_rope_theta(raw),
            qkv_bias=qkv_bias,
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
            embedding_size=raw.get("embedding_size"),
            causal=raw.get("causal", default_causal),
            block_size=raw.get("block_size"),
            # Dream/DiffuCoder kept Qwen's shift; plain AR use of Qwen/LLaMA is shifted too.
            shift_logits=raw.get("shift_logits", True),
            mask_token_id=raw.get("mask_token_id"),
            pad_token_id=raw.get("pad_token_id"),
            eos_token_id=_first(raw.get("eos_token_id")),
            bos_token_id=_first(raw.get("bos_token_id")),
            architecture=arch,
            extra={k: v for k, v in raw.items() if k not in used},
        )

    @classmethod
    def _from_llada(cls, raw: dict[str, Any]) -> ModelConfig:
        heads = raw["n_heads"]
        hidden = raw["d_model"]
        mlp = raw.get("mlp_hidden_size") or raw.get("mlp_ratio", 4) * hidden
        used = {
            "d_model",
            "n_heads",
            "n_kv_heads",
            "n_layers",
            "mlp_hidden_size",
            "rope_theta",
            "rms_norm_eps",
            "vocab_size",
            "embedding_size",
            "weight_tying",
            "mask_token_id",
            "eos_token_id",
            "pad_token_id",
            "max_sequence_length",
            "include_bias",
            "include_qkv_bias",
            "model_type",
            "architectures",
        }
        if raw.get("include_bias", False):
            raise ValueError("LLaDA configs with include_bias=true are not supported")
        # OLMo's output head has `embedding_size` rows (>= vocab_size, padded for speed);
        # logits over the padding rows are never a real token but keep the shapes exact.
        head_rows = raw.get("embedding_size") or raw["vocab_size"]
        return cls(
            vocab_size=head_rows,
            hidden_size=hidden,
            intermediate_size=mlp,
            num_layers=raw["n_layers"],
            num_heads=heads,
            num_kv_heads=raw.get("n_kv_heads") or heads,
            max_position_embeddings=raw.get("max_sequence_length", 4096),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
            rope_theta=raw.get("rope_theta", 10000.0),
            qkv_bias=bool(raw.get("include_qkv_bias", False)),
            tie_word_embeddings=bool(raw.get("weight_tying", False)),
            causal=False,
            shift_logits=False,
            mask_token_id=raw.get("mask_token_id"),
            pad_token_id=raw.get("pad_token_id"),
            eos_token_id=_first(raw.get("eos_token_id")),
            architecture="llada",
            extra={k: v for k, v in raw.items() if k not in used},
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """config.json content for demask's own checkpoints (Qwen2 key names)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "model_type": "demask",
                "architectures": ["DemaskModel"],
                "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads,
                "num_key_value_heads": self.num_kv_heads,
                "head_dim": self.head_dim,
                "hidden_act": "silu",
                "max_position_embeddings": self.max_position_embeddings,
                "rms_norm_eps": self.rms_norm_eps,
                "rope_theta": self.rope_theta,
                "qkv_bias": self.qkv_bias,
                "tie_word_embeddings": self.tie_word_embeddings,
                "causal": self.causal,
                "shift_logits": self.shift_logits,
                "mask_token_id": self.mask_token_id,
                "pad_token_id": self.pad_token_id,
                "eos_token_id": self.eos_token_id,
                "bos_token_id": self.bos_token_id,
            }
        )
        if self.embedding_size is not None:
            out["embedding_size"] = self.embedding_size
        if self.block_size is not None:
            out["block_size"] = self.block_size
        return out


def _rope_theta(raw: dict[str, Any]) -> float:
    """rope_theta from either the classic key or transformers 5's `rope_parameters`.

    Only plain RoPE is implemented: a scaled variant (linear, dynamic, yarn, llama3) is refused
    rather than silently run unscaled.
    """
    params = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", None):
        raise ValueError(f"rope scaling {kind!r} in config.json is not supported; only plain RoPE is")
    return float(raw.get("rope_theta", params.get("rope_theta", 10000.0)))


def _first(value: Any) -> Any:
    """Some configs list several eos ids; the first is the one a completion ends with."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value
