"""GRPO runs as YAML recipes (``demask grpo --recipe``): :class:`GRPORecipe`, loading,
overriding and dumping them, and :func:`run_grpo_recipe` (load the policy and the tasks,
then :func:`~demask.training.rl.grpo.train_grpo`). The glue between a recipe file and the
algorithm; the algorithm itself is :mod:`demask.training.rl.grpo`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.recipe import EvalRecipe
from demask.training.rl.grpo import GRPOConfig, GRPOResult, train_grpo


@dataclass
class GRPORecipe:
    """A GRPO run as YAML (``demask grpo --recipe``); each block is a dataclass.

    policy: the checkpoint to post-train (config.json + safetensors + tokenizer.json).
    tasks / task_options: the prompts, a benchmark spec for ``demask.tasks.load_tasks`` and
        its keyword arguments (tinycode: TinyCodeConfig fields).
    grpo: :class:`GRPOConfig`; train: the optimizer, schedule, seed, cadence and output
        (:class:`~demask.training.config.TrainConfig`); eval: the periodic held-out pass@k
        (:class:`~demask.training.recipe.EvalRecipe`, ``tasks`` defaults to ``tinycode:validation``).
    """

    policy: str = "tinycode-mdm"
    """The model to post-train (the SFT model): a checkpoint directory, a shipped model's name or a
    Hugging Face hub id."""
    dtype: str | None = "float32"
    """Weights dtype to load the policy in (training keeps fp32 weights; use train.precision:
    bf16 for autocast)."""
    tasks: str = "tinycode:train"
    """Benchmark spec of the training prompts (their tests give the rewards)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of load_tasks (tinycode: TinyCodeConfig fields)."""
    max_tasks: int | None = None
    """Use only the first this many tasks (None = all)."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimizer, schedule, seed, cadence and output (the ``train:`` block of an SFT recipe)."""
    eval: EvalRecipe | None = None
    """The periodic held-out evaluation (EvalRecipe fields); null = none."""

    def __post_init__(self) -> None:
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"max_tasks must be positive or null (all), got {self.max_tasks}")

    renamed_keys: ClassVar[dict[str, str]] = {"training": "train"}
    """Former block names (read with a deprecation warning, in recipes and ``--set``)."""

    @staticmethod
    def upgrade_keys(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
        """Read the former block name ``training:`` as ``train:`` (with a deprecation warning)."""
        if "training" in raw:
            if "train" in raw:
                raise ValueError("a GRPO recipe has both 'training:' and 'train:' blocks; keep 'train:'")
            warnings.warn(
                "the GRPO recipe block 'training:' is called 'train:' now, as in SFT recipes; "
                "the old name goes in the next release",
                DeprecationWarning,
                stacklevel=3,
            )
            raw["train"] = raw.pop("training")
        return raw


def load_grpo_recipe(path: str | Path, settings: Sequence[str] = ()) -> GRPORecipe:
    """Read a GRPO recipe, then apply ``KEY=VALUE`` settings (see :func:`set_recipe_fields`);
    unknown keys are named with the closest known one."""
    from demask.training.recipe import read_recipe

    return read_recipe(
        GRPORecipe,
        path,
        settings,
        blocks="policy, tasks, grpo, train, eval",
        example="grpo.advantage=loo or train.lr=1e-4",
        upgrade=GRPORecipe.upgrade_keys,
    )


def dump_grpo_recipe(recipe: GRPORecipe) -> str:
    """The recipe as YAML (every field); load(dump(r)) == r."""
    from demask.training.recipe import dump_recipe

    return dump_recipe(recipe)


def override_grpo_recipe(
    recipe: GRPORecipe, *, estimator: str | None = None, max_seconds: float | None = None, **train_fields: Any
) -> GRPORecipe:
    """A copy with these overrides applied (None values are ignored): ``train_fields`` go to
    the train block (out_dir, max_steps, seed, lr ...; a shorter max_steps keeps the warm-up
    within it); a new estimator clears the recipe's estimator options."""
    grpo = recipe.grpo if estimator is None else recipe.grpo.replace(estimator=estimator, estimator_options={})
    if max_seconds is not None:
        grpo = grpo.replace(max_seconds=max_seconds)
    return dataclasses.replace(recipe, train=recipe.train.override(**train_fields), grpo=grpo)


def set_recipe_fields(recipe: GRPORecipe, settings: Sequence[str]) -> GRPORecipe:
    """A copy with ``KEY=VALUE`` settings applied, KEY a dotted path into the recipe
    (``grpo.advantage=loo_positive``, ``train.lr=1e-4``, ``grpo.rollout.policy=confidence``)
    and VALUE read as YAML (``null``, numbers, ``{a: 1}``). The result is checked like a loaded
    recipe: a misspelt key is named with the closest known one."""
    from demask.config import apply_settings, from_dict, to_dict

    try:
        raw = apply_settings(to_dict(recipe), settings, GRPORecipe, example="grpo.advantage=loo or train.lr=1e-4")
        return from_dict(GRPORecipe, raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"settings {list(settings)}: {exc}") from None


def eval_callbacks(recipe: GRPORecipe, tokenizer: Any, gen_length: int) -> list[Callback]:
    """The periodic held-out pass@k of ``recipe.eval`` (``tasks`` default: tinycode:validation), or none."""
    spec = recipe.eval
    if spec is None or not spec.enabled:
        return []
    from demask.tasks import load_tasks

    return spec.callbacks(load_tasks(spec.tasks or "tinycode:validation"), tokenizer, gen_length, recipe.train.out_dir)


def run_grpo_recipe(
    recipe: GRPORecipe, *, resume: bool = False, log: Callable[[str], None] | None = print
) -> GRPOResult:
    """Load the policy and the tasks, then :func:`train_grpo`; ``log`` gets one-line messages."""
    from demask.model import load_pretrained
    from demask.tasks import load_tasks

    say = log or (lambda *_: None)
    model, tokenizer = load_pretrained(recipe.policy, dtype=recipe.dtype)
    tasks = load_tasks(recipe.tasks, **recipe.task_options)
    if recipe.max_tasks is not None:
        tasks = tasks[: recipe.max_tasks]
    g = recipe.grpo
    say(
        f"policy: {recipe.policy} ({model.num_parameters() / 1e6:.2f}M parameters); {len(tasks)} "
        f"prompts from {recipe.tasks}; estimator {g.estimator}, G={g.group_size}, "
        f"{g.prompts_per_step} prompts/round, mu={g.inner_iterations}, {recipe.train.max_steps} updates"
    )
    callbacks = eval_callbacks(recipe, tokenizer, g.rollout.gen_length)
    return train_grpo(
        g,
        recipe.train,
        model,
        tasks,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files={"grpo_recipe.yaml": dump_grpo_recipe(recipe)},
        log=say,
    )
