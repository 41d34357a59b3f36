"""Recipes: a whole training run as YAML, read into dataclasses.

A recipe has five blocks, each a dataclass (field docstrings document the keys)::

    model:      ModelRecipe      sizes of a new model, or init_from: a checkpoint directory
    tokenizer:  TokenizerRecipe  a tokenizer file, or a BPE trained on the data's texts
    data:       DataRecipe       the data source (demask.training.sources)
    train:      TrainConfig      the loop's settings (demask.training.config)
    eval:       EvalRecipe       what the periodic evaluation decodes and scores

:func:`load_recipe` refuses unknown keys (naming the key and the closest known one) and
values of the wrong type; numbers written as strings by YAML 1.1 (``1e-3``) are read as
numbers. :func:`dump_recipe` writes a recipe back; load(dump(r)) == r.

Not covered: includes / inheritance between recipe files, environment-variable expansion.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from demask.training.config import TrainConfig, field_docs  # noqa: F401 (re-exported)
from demask.training.registry import did_you_mean
from demask.training.sources import DataRecipe


@dataclass
class ModelRecipe:
    """The ``model:`` block: a new backbone's sizes, or a checkpoint to start from."""

    init_from: str | None = None
    """A checkpoint directory (config.json + safetensors + tokenizer.json) to fine-tune; the
    size fields below are then ignored."""
    dtype: str | None = None
    """Weights dtype when loading init_from (float32, bfloat16); None keeps the stored one."""
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    """None = num_heads (no grouped-query attention)."""
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    causal: bool = False
    """True: an autoregressive model (train it with objective: autoregressive)."""
    shift_logits: bool = True
    """True: position i-1 predicts token i (Dream, DiffuCoder); False: position i (LLaDA)."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of a new model."""

    def __post_init__(self) -> None:
        if self.init_std <= 0:
            raise ValueError(f"model.init_std must be positive, got {self.init_std}")


@dataclass
class TokenizerRecipe:
    """The ``tokenizer:`` block."""

    path: str | None = None
    """tokenizer.json or a checkpoint directory; None = model.init_from's tokenizer, or a
    byte-level BPE trained on the data source's texts."""
    vocab_size: int = 768
    """Size of a trained BPE (256 bytes + 3 special tokens at least)."""
    min_frequency: int = 2
    """A merge needs at least this many occurrences in the texts."""

    def __post_init__(self) -> None:
        if self.vocab_size < 259:
            raise ValueError(f"tokenizer.vocab_size={self.vocab_size} is below the 259 tokens a "
                             "byte-level BPE needs (256 bytes + eos, mask, pad)")


@dataclass
class EvalRecipe:
    """The ``eval:`` block: pass@k on held-out tasks, run every train.eval_every steps."""

    enabled: bool = True
    """False: no evaluation callback (train.eval_every is then irrelevant)."""
    tasks: str | None = None
    """A benchmark spec (``tinycode:test``, ``humaneval``, a JSONL path); None = the data
    source's held-out tasks (TinyCode's test split), or nothing if it has none."""
    max_tasks: int | None = None
    """Evaluate on the first this many tasks only (None = all)."""
    n_samples: int = 1
    """Samples per task (pass@1 is estimated from them)."""
    batch_size: int = 32
    """Prompts decoded together."""
    timeout_s: float = 3.0
    """Wall-clock limit per program in the sandbox."""
    workers: int | None = None
    """Sandbox worker processes (None = its default)."""
    decode: dict[str, Any] = field(default_factory=dict)
    """DecodeConfig fields; gen_length defaults to data.completion_length, policy to
    confidence, temperature to 0 (greedy)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"eval.max_tasks must be positive or null (all), got {self.max_tasks}")
        if self.timeout_s <= 0:
            raise ValueError(f"eval.timeout_s must be positive, got {self.timeout_s}")


@dataclass
class TrainRecipe:
    """A whole training run."""

    model: ModelRecipe = field(default_factory=ModelRecipe)
    tokenizer: TokenizerRecipe = field(default_factory=TokenizerRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalRecipe = field(default_factory=EvalRecipe)


# ---------------------------------------------------------------------------- YAML <-> dataclasses
def load_recipe(path: str | Path) -> TrainRecipe:
    """Read a recipe file; relative ``path``-like values stay as written (relative to the
    working directory, as on the command line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no recipe at {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping with blocks model, tokenizer, data, train, eval")
    try:
        return from_dict(TrainRecipe, raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def dump_recipe(recipe: TrainRecipe) -> str:
    """The recipe as YAML (every field, defaults included)."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, default_flow_style=None)


def parse_setting(text: str, example: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE read as YAML)`` for command-line settings
    (``--decode top_p=0.95``, ``--set training.lr=1e-4``); ``example`` goes in the error.

    >>> parse_setting("grpo.beta=0.02", "k=v")
    ('grpo.beta', 0.02)
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: write KEY=VALUE, e.g. {example}")
    return key.strip(), yaml.safe_load(value)


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, raw: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, checking keys and types."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where or 'the recipe'} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ValueError(f"unknown key {name!r}{did_you_mean(str(key), fields)} "
                             f"(known: {', '.join(sorted(fields))})")
        kwargs[key] = _coerce(value, hints[key], name)
    return cls(**kwargs)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        if value is None:
            if type(None) in options:
                return None
            raise ValueError(f"{where} may not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {typ}")
    if dataclasses.is_dataclass(typ):
        return from_dict(typ, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or typ is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if typ is Any:
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as a string
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value
