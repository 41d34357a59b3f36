"""Resumable checkpoints: the model in the Hugging Face layout plus ``trainer_state.pt``.

A run directory holds::

    out/
      checkpoint-0000200/   config.json, model.safetensors, tokenizer.json, trainer_state.pt, ...
      checkpoint-0000400/
      latest                the name of the newest complete checkpoint
      train_log.csv

Every file is written to a temporary name and moved into place with ``os.replace``
(``save_pretrained`` does the same for the model directory), and ``latest`` is rewritten
only after a checkpoint is complete, so a run killed at any instant leaves ``latest``
naming a complete checkpoint. The checkpoint directory is loadable as it is by
:func:`demask.model.load_pretrained`.

trainer_state.pt holds the step, the optimizer state (keyed by parameter name, the same
format for every distributed strategy), the learning-rate schedule, the random generators
(torch, python, numpy, CUDA) and the data position. It is loaded with
``torch.load(weights_only=True)``: only tensors and plain containers, nothing executable.

Not covered: sharded (distributed-checkpoint) trainer states, checkpoints on object stores.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from demask.model import ModelConfig, Tokenizer, save_pretrained

TRAINER_STATE = "trainer_state.pt"
LATEST = "latest"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"checkpoint-{step:07d}"


def checkpoint_step(path: str | Path) -> int:
    """The update count in a checkpoint folder's name (``checkpoint-0000162`` -> 162)."""
    m = _NAME.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like checkpoint-0000200)")
    return int(m.group(1))


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


class _Weights:
    """What save_pretrained reads from a model: its config and a state dict. Lets a
    gathered (e.g. FSDP) state dict be saved without rebuilding the module."""

    def __init__(self, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
        self.config = config
        self._state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    config: ModelConfig,
    model_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    tokenizer: Tokenizer | None = None,
    extra_files: dict[str, str] | None = None,
    keep: int = 1,
    write_weights: Callable[[Path, dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    """Write checkpoint ``step`` (model, tokenizer, trainer state), point ``latest`` at it
    and delete all but the newest ``keep`` checkpoints. Returns the checkpoint directory.

    write_weights: writes ``model_state`` into the checkpoint folder (its config.json included)
    for a model that is not a Transformer (a learned unmasking policy); default: the Hugging
    Face layout with ``config``."""
    out_dir = Path(out_dir)
    path = checkpoint_dir(out_dir, step)
    if write_weights is not None:
        path.mkdir(parents=True, exist_ok=True)
        write_weights(path, model_state)
    else:
        save_pretrained(_Weights(config, model_state), path, tokenizer, extra_files=extra_files)
    atomic_write_bytes(path / TRAINER_STATE, lambda f: torch.save(trainer_state, f))
    atomic_write_text(out_dir / LATEST, path.name + "\n")
    for old in list_checkpoints(out_dir)[:-keep]:
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoints (with a trainer state), oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in out_dir.iterdir()
        if (m := _NAME.match(p.name)) and (p / TRAINER_STATE).is_file() and (p / "config.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, or else the newest complete one, or None."""
    out_dir = Path(out_dir)
    pointer = out_dir / LATEST
    if pointer.is_file():
        path = out_dir / pointer.read_text().strip()
        if (path / TRAINER_STATE).is_file():
            return path
    found = list_checkpoints(out_dir)
    return found[-1] if found else None


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    file = Path(path) / TRAINER_STATE
    if not file.is_file():
        raise FileNotFoundError(
            f"no {TRAINER_STATE} in {path}: not a resumable checkpoint "
            "(a model-only directory can start a new run via init_from)"
        )
    return torch.load(file, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------- RNG
def rng_state() -> dict[str, Any]:
    """The state of every global generator, as tensors and plain containers."""
    # the default (legacy) form is this tuple; numpy's stub picks its dict overload
    legacy = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    kind, keys, pos, has_gauss, gauss = legacy
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def require_unchanged(before: dict[str, Any], now: Any, keys: tuple[str, ...], prefix: str = "") -> None:
    """Refuse a resume whose settings ``keys`` differ from the checkpoint's (``before``):
    a changed seed, batch or schedule would replay different data or noise."""
    for key in keys:
        if before.get(key) != getattr(now, key):
            raise ValueError(
                f"cannot resume: the checkpoint was trained with {prefix}{key}="
                f"{before.get(key)!r}, this run has {prefix}{key}={getattr(now, key)!r}; "
                "use the same value or a new out_dir"
            )
