"""Helpers shared by the test files (``from helpers import tiny_model``: tests/ is on sys.path).

``tiny_model`` is the one builder of small random Transformers for the tests. Its defaults
are the GRPO tests' model; a test that needs another one passes the ModelConfig fields that
differ (and ``std``/``seed`` for the initialisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from demask.model import ModelConfig, Transformer

ROOT = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = dict(
    vocab_size=32,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=32,
    causal=False,
    shift_logits=True,
    mask_token_id=31,
    pad_token_id=0,
    eos_token_id=2,
)
"""The default tiny sizes and special ids (mask 31 = the last id, pad 0, end 2)."""


def tiny_config(**overrides: Any) -> ModelConfig:
    """``ModelConfig`` of :data:`TINY` with ``overrides`` (any ModelConfig field) on top."""
    return ModelConfig(**{**TINY, **overrides})


def tiny_model(*, causal: bool = False, seed: int = 0, std: float = 0.2, **overrides: Any) -> Transformer:
    """A random fp32 Transformer of ``tiny_config(causal=causal, **overrides)``, in train mode.

    The linear and embedding weights are drawn Normal(0, ``std``) from a generator seeded with
    ``seed`` (biases zero, norms one), so the same arguments give the same model whatever the
    global RNG holds."""
    model = Transformer(tiny_config(causal=causal, **overrides))
    model.init_weights(std=std, generator=torch.Generator().manual_seed(seed))
    return model


def tiny_pretrain_recipe(tmp_path: Path) -> Path:
    """recipes/pretrain/stdlib.yaml shrunk to a one-layer model on a few stdlib files,
    written to ``tmp_path/pretrain.yaml`` (seconds per hundred steps)."""
    raw = yaml.safe_load((ROOT / "recipes/pretrain/stdlib.yaml").read_text())
    raw["model"]["config"].update(
        hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=2, max_position_embeddings=64
    )
    raw["tokenizer"]["vocab_size"] = 300
    raw["data"].update(path="@stdlib/json", max_files=5, seq_len=64)
    raw["train"].update(global_batch_size=4, log_every=1, progress=False, num_threads=1)
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
