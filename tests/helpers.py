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


def tiny_checkpoint(path: Path, texts: list[str] | None = None, **overrides: Any) -> tuple[Transformer, Any]:
    """A random tiny diffusion model with a BPE tokenizer trained on ``texts``, saved as a
    checkpoint directory at ``path``; returns (model, tokenizer). ``overrides``: ModelConfig
    fields (default one layer, two heads, a 64-token context, std 0.5 weights)."""
    from demask.model import save_pretrained, train_bpe_tokenizer

    tok = train_bpe_tokenizer(texts or ["def f(x):\n    return x\n"] * 8, vocab_size=260)
    ids = dict(mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    sizes = dict(num_layers=1, num_heads=2, max_position_embeddings=64)
    model = tiny_model(std=0.5, vocab_size=tok.vocab_size, **{**sizes, **ids, **overrides})
    save_pretrained(model, path, tok)
    return model, tok


def random_policy_net(seed: int = 0, **config: Any):
    """A learned-policy network with random weights everywhere (Normal(0, 0.3) from ``seed``),
    so that its decisions depend on its inputs; ``config``: PolicyNetConfig fields."""
    from demask.decoding.policy_net import PolicyNet, PolicyNetConfig

    net = PolicyNet(PolicyNetConfig(**config))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.eval()
