"""From a recipe to a trained model: :func:`prepare` builds the pieces, :func:`run_recipe`
trains them. ``demask train`` is a thin layer over these two.

Order of construction: the data source (it may generate TinyCode), the tokenizer (a file,
the starting checkpoint's, the resumed checkpoint's, or a BPE trained on the source's
texts), the model (loaded from ``model.init_from`` or built and initialised from the seed),
the tokenized examples, then the evaluation callbacks.

Not covered: changing the model's vocabulary size when a tokenizer larger than the
checkpoint's head is given (refused with the two sizes).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from demask.model import Tokenizer, Transformer, load_model, resolve_checkpoint, train_bpe_tokenizer
from demask.model.hub import resolve_tokenizer
from demask.training.checkpointing import latest_checkpoint
from demask.training.data import ExampleData
from demask.training.distributed import DistInfo, barrier, init_distributed
from demask.training.loop import Callback, TrainResult, train
from demask.training.recipe import TrainRecipe, dump_recipe
from demask.training.sources import DataSource, build_source


@dataclass
class Prepared:
    """Everything :func:`demask.training.train` needs, built from a recipe."""

    recipe: TrainRecipe
    model: Transformer
    tokenizer: Tokenizer
    data: ExampleData
    source: DataSource
    callbacks: list[Callback]


def apply_overrides(
    recipe: TrainRecipe, *, out_dir: str | None = None, max_steps: int | None = None, **train_fields: Any
) -> TrainRecipe:
    """A copy of ``recipe`` with train-block fields replaced (None values are ignored)."""
    return dataclasses.replace(
        recipe, train=recipe.train.override(out_dir=out_dir, max_steps=max_steps, **train_fields)
    )


def _tokenizer(recipe: TrainRecipe, source: DataSource, resume_from: Path | None, info: DistInfo) -> Tokenizer:
    if resume_from is not None:
        return Tokenizer.from_dir(resume_from)
    if recipe.tokenizer.path is not None:
        return Tokenizer.from_dir(resolve_tokenizer(recipe.tokenizer.path))
    if recipe.model.init_from is not None:
        return Tokenizer.from_dir(resolve_checkpoint(recipe.model.init_from))
    if info.world_size == 1:
        return _train_bpe(recipe, source)
    # Several processes: the main one trains the BPE, the others read its file, so every
    # process has the same vocabulary whatever the trainer's tie-breaking.
    if recipe.train.out_dir is None:
        raise ValueError("a distributed run that trains its tokenizer needs train.out_dir to share it")
    shared = Path(recipe.train.out_dir) / "tokenizer"
    if info.is_main:
        _train_bpe(recipe, source).save(shared)
    barrier(info)
    return Tokenizer.from_dir(shared)


def _train_bpe(recipe: TrainRecipe, source: DataSource) -> Tokenizer:
    return train_bpe_tokenizer(
        source.texts(), recipe.tokenizer.vocab_size, min_frequency=recipe.tokenizer.min_frequency
    )


def adapt_attention(
    model: Transformer, attention: str, where: str = "the checkpoint", block_size: int | None = None
) -> None:
    """Switch a loaded model's attention (``bidirectional``, ``block-causal`` with
    ``block_size``, or ``causal``), keeping every weight and the shifted-logits convention. A
    (block) masked-diffusion model needs a mask token; an autoregressive one must predict
    token i at position i - 1."""
    cfg = model.config
    if attention in ("bidirectional", "block-causal"):
        if cfg.mask_token_id is None:
            raise ValueError(
                f"{where} has no mask token (neither its config.json nor its tokenizer names one), so it "
                "cannot become a masked-diffusion model; add a mask token to its tokenizer (and a row for it "
                "to the embedding) first"
            )
        if attention == "block-causal" and (block_size is None or block_size <= 0):
            raise ValueError(f"block-causal attention needs a positive block_size, got {block_size}")
        cfg.causal, cfg.block_size = False, block_size if attention == "block-causal" else None
    elif attention == "causal":
        if not cfg.shift_logits:
            raise ValueError(f"{where} predicts token i at position i (shift_logits false): it cannot run causally")
        cfg.causal, cfg.block_size = True, None
    else:
        raise ValueError(f"attention={attention!r} is not 'bidirectional', 'block-causal' or 'causal'")


def _model(recipe: TrainRecipe, tokenizer: Tokenizer) -> Transformer:
    spec = recipe.model
    if spec.init_from is not None:
        model = load_model(spec.init_from, dtype=spec.dtype)
        cfg = model.config
        for role in ("mask", "pad", "eos", "bos"):
            key = f"{role}_token_id"
            if getattr(cfg, key) is None:
                setattr(cfg, key, getattr(tokenizer, key))
        if tokenizer.vocab_size > cfg.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} tokens, the checkpoint's head "
                f"{cfg.vocab_size} rows; use the checkpoint's own tokenizer"
            )
        if spec.attention is not None:
            adapt_attention(model, spec.attention, str(spec.init_from), spec.block_size)
        return model
    config = dataclasses.replace(
        spec.config,
        vocab_size=tokenizer.vocab_size,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = Transformer(config)
    model.init_weights(std=spec.init_std, generator=torch.Generator().manual_seed(recipe.train.seed))
    return model


def _eval_callbacks(recipe: TrainRecipe, source: DataSource, tokenizer: Tokenizer) -> list[Callback]:
    spec = recipe.eval
    if not spec.enabled:
        return []
    if spec.tasks is not None:
        from demask.tasks import load_tasks

        tasks = load_tasks(spec.tasks)
    else:
        tasks = source.eval_tasks() or []  # None: the source has no held-out tasks
    return spec.callbacks(tasks, tokenizer, recipe.data.completion_length, recipe.train.out_dir)


def prepare(recipe: TrainRecipe, *, resume: bool = False) -> Prepared:
    """Build data, tokenizer, model and callbacks. With ``resume`` the tokenizer comes from
    the newest checkpoint in train.out_dir (the model weights are loaded by train())."""
    info = init_distributed(recipe.train.device)
    source = build_source(recipe.data)
    resume_from = latest_checkpoint(recipe.train.out_dir) if resume and recipe.train.out_dir else None
    tokenizer = _tokenizer(recipe, source, resume_from, info)
    model = _model(recipe, tokenizer)
    data = source.examples(tokenizer, model.config)
    callbacks = _eval_callbacks(recipe, source, tokenizer)
    return Prepared(recipe, model, tokenizer, data, source, callbacks)


def run_recipe(recipe: TrainRecipe, *, resume: bool = False, log: Any = print) -> TrainResult:
    """Prepare and train; ``log`` receives one-line progress messages (None: silent)."""
    main = int(os.environ.get("RANK", "0")) == 0
    say = log if (log is not None and main) else (lambda *_: None)
    prepared = prepare(recipe, resume=resume)
    model = prepared.model
    say(f"data: {prepared.source.summary()}")
    say(
        f"model: {model.num_parameters() / 1e6:.2f}M parameters, vocab {model.config.vocab_size}, "
        f"{model.config.attention}; objective {recipe.train.objective}"
    )
    return train(
        recipe.train,
        model,
        prepared.data,
        tokenizer=prepared.tokenizer,
        callbacks=prepared.callbacks,
        resume=resume,
        extra_files={"recipe.yaml": dump_recipe(recipe)},
    )
