"""Recipes: a whole training run as YAML, read into dataclasses.

A recipe has five blocks, each a dataclass (field docstrings document the keys)::

    model:      ModelRecipe      init_from: a checkpoint directory, or config: a new model's ModelConfig
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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from demask.config import apply_settings, field_docs, from_dict, parse_setting, to_dict
from demask.model.config import ModelConfig
from demask.training.config import TrainConfig
from demask.training.sources import DataRecipe

R = TypeVar("R")

if TYPE_CHECKING:
    from demask.decoding import DecodeConfig
    from demask.tasks.base import Task
    from demask.training.loop import Callback

__all__ = [
    "EvalRecipe",
    "ModelRecipe",
    "TokenizerRecipe",
    "TrainRecipe",
    "dump_recipe",
    "field_docs",
    "from_dict",
    "load_recipe",
    "parse_setting",
    "to_dict",
]


ATTENTIONS = ("bidirectional", "block-causal", "causal")
"""Values of ModelRecipe.attention."""


@dataclass
class ModelRecipe:
    """The ``model:`` block: a checkpoint to start from, or the config of a new backbone."""

    init_from: str | None = None
    """A checkpoint directory (config.json + safetensors + tokenizer.json) to fine-tune; the
    ``config`` block is then ignored."""
    dtype: str | None = None
    """Weights dtype when loading init_from (float32, bfloat16); None keeps the stored one."""
    config: ModelConfig = field(default_factory=ModelConfig)
    """A new backbone: :class:`~demask.model.ModelConfig` fields (hidden_size, num_layers,
    num_heads, num_kv_heads, max_position_embeddings, causal, shift_logits, ...). vocab_size
    and the special-token ids are taken from the tokenizer."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of a new model."""
    attention: str | None = None
    """With init_from: the attention to train the checkpoint with, ``bidirectional`` (adapt an
    autoregressive model to masked diffusion, as Dream and DiffuCoder do: the weights and the
    shifted logits are kept, only the mask changes), ``block-causal`` (block diffusion, with
    ``block_size``) or ``causal``; None keeps the checkpoint's. A new model sets
    ``config.causal`` / ``config.block_size`` instead."""
    block_size: int | None = None
    """With ``attention: block-causal``: positions per block (bidirectional inside a block,
    causal across blocks); must divide the completion length."""

    def __post_init__(self) -> None:
        if self.init_std <= 0:
            raise ValueError(f"model.init_std must be positive, got {self.init_std}")
        if self.attention is not None:
            if self.attention not in ATTENTIONS:
                raise ValueError(
                    f"model.attention={self.attention!r} is not one of {ATTENTIONS} (or null: the checkpoint's)"
                )
            if self.init_from is None:
                raise ValueError(
                    "model.attention applies to a checkpoint (model.init_from); a new model sets "
                    "model.config.causal (true: causal, false: bidirectional) and model.config.block_size"
                )
        if (self.attention == "block-causal") != (self.block_size is not None):
            raise ValueError(
                f"model.block_size={self.block_size} goes with model.attention: block-causal and only with it "
                f"(attention is {self.attention!r}); set both, e.g. attention: block-causal, block_size: 8"
            )
        if self.block_size is not None and self.block_size <= 0:
            raise ValueError(f"model.block_size must be positive, got {self.block_size}")

    @staticmethod
    def upgrade_keys(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Read the former flat spelling (``model: {hidden_size: 256}``) as the ``config:``
        block, with a deprecation warning; :func:`demask.config.from_dict` calls this."""
        config_keys = {f.name for f in dataclasses.fields(ModelConfig)} - {
            f.name for f in dataclasses.fields(ModelRecipe)
        }
        flat = {k: raw.pop(k) for k in list(raw) if k in config_keys}
        if flat:
            warnings.warn(
                f"{where or 'model'}: {', '.join(flat)} belong in a 'config:' block now "
                "(model: {config: {hidden_size: ...}}); the flat spelling goes in the next "
                "release",
                DeprecationWarning,
                stacklevel=3,
            )
            raw["config"] = {**flat, **dict(raw.get("config") or {})}
        return raw


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
            raise ValueError(
                f"tokenizer.vocab_size={self.vocab_size} is below the 259 tokens a "
                "byte-level BPE needs (256 bytes + eos, mask, pad)"
            )


@dataclass
class EvalRecipe:
    """The ``eval:`` block: pass@k on held-out tasks, run every train.eval_every steps."""

    enabled: bool = True
    """False: no evaluation callback (train.eval_every is then irrelevant)."""
    tasks: str | None = None
    """A benchmark spec (``tinycode:validation``, ``humaneval``, a JSONL path); None = the data
    source's held-out tasks (TinyCode's validation split; v1's test split), or nothing if it has none."""
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
    """DecodeConfig fields (policy_options included); gen_length defaults to the completion
    length (data.completion_length, or the GRPO rollouts'), policy to confidence,
    temperature to 0 (greedy)."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be at least 1, got {getattr(self, name)}")
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"eval.max_tasks must be positive or null (all), got {self.max_tasks}")
        if self.timeout_s <= 0:
            raise ValueError(f"eval.timeout_s must be positive, got {self.timeout_s}")

    def decode_config(self, gen_length: int) -> DecodeConfig:
        """The evaluation's decoder: greedy confidence decoding of ``gen_length`` tokens,
        unless ``decode:`` says otherwise."""
        from demask.decoding import DecodeConfig

        defaults = {"gen_length": gen_length, "policy": "confidence", "temperature": 0.0}
        return DecodeConfig.from_dict({**defaults, **self.decode})

    def callbacks(self, tasks: Sequence[Task], tokenizer: Any, gen_length: int, out_dir: str | None) -> list[Callback]:
        """The periodic pass@k evaluation on ``tasks`` (the first ``max_tasks``), written
        under ``out_dir/eval``; none when disabled or without tasks."""
        if not self.enabled or not tasks:
            return []
        from demask.training.callbacks import PassAtKEval

        tasks = list(tasks)[: self.max_tasks] if self.max_tasks is not None else list(tasks)
        out = Path(out_dir) / "eval" if out_dir else Path("eval")
        return [
            PassAtKEval(
                tasks,
                tokenizer,
                self.decode_config(gen_length),
                out,
                n_samples=self.n_samples,
                batch_size=self.batch_size,
                seed=self.seed,
                timeout_s=self.timeout_s,
                workers=self.workers,
            )
        ]


@dataclass
class TrainRecipe:
    """A whole training run."""

    model: ModelRecipe = field(default_factory=ModelRecipe)
    tokenizer: TokenizerRecipe = field(default_factory=TokenizerRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalRecipe = field(default_factory=EvalRecipe)


# ---------------------------------------------------------------------------- YAML <-> dataclasses
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
"""The recipes shipped inside the package (``recipes/`` in the repository links here)."""


def shipped_recipes() -> dict[str, Path]:
    """The shipped recipes by name: ``tinycode/sft``, ``diffucoder-7b/coupled_grpo`` ..."""
    return {p.relative_to(RECIPES).with_suffix("").as_posix(): p for p in sorted(RECIPES.glob("**/*.yaml"))}


def resolve_recipe(spec: str | Path) -> Path:
    """A recipe file: ``spec`` itself if it exists, else the shipped recipe of that name
    (``tinycode/sft``, ``recipes/tinycode/sft.yaml`` from any directory)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = path.as_posix().removeprefix("recipes/").removesuffix(".yaml")
    shipped = shipped_recipes()
    if name in shipped:
        return shipped[name]
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a recipe YAML file (shipped: {', '.join(shipped)})")
    raise FileNotFoundError(f"no recipe at {path}, and no shipped recipe named {name!r} (shipped: {', '.join(shipped)};"
                            " `demask recipes` lists and copies them)")  # fmt: skip


def read_recipe(
    cls: type[R],
    path: str | Path,
    settings: Sequence[str] = (),
    *,
    blocks: str,
    example: str = "train.lr=1e-4",
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> R:
    """Read a recipe of dataclass ``cls`` (a file, or a shipped recipe's name:
    :func:`resolve_recipe`), apply ``KEY=VALUE`` settings (dotted keys, YAML values) and check
    it: an unknown key is named with the closest known one. ``blocks`` names the mapping's
    blocks for the error when the file is not a mapping; ``upgrade`` rewrites former keys."""
    path = resolve_recipe(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a recipe is a mapping with blocks {blocks}")
    try:
        if upgrade is not None:
            raw = upgrade(raw)
        apply_settings(raw, settings, cls, example=example)
        return from_dict(cls, raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_recipe(path: str | Path, settings: Sequence[str] = ()) -> TrainRecipe:
    """Read an SFT recipe (:func:`read_recipe`); relative ``path``-like values stay as written
    (relative to the working directory, as on the command line)."""
    return read_recipe(TrainRecipe, path, settings, blocks="model, tokenizer, data, train, eval")


def dump_recipe(recipe: Any) -> str:
    """A recipe (any recipe dataclass) as YAML, every field, defaults included; read back by
    :func:`read_recipe` to an equal recipe."""
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, default_flow_style=None)
