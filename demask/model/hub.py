"""Where a checkpoint is: a directory, a model shipped with demask, or a Hugging Face hub id.

    resolve_checkpoint("runs/sft/latest")               # a directory (config.json, weights, tokenizer)
    resolve_checkpoint("tinycode-mdm")                   # shipped in demask/assets (any working directory)
    resolve_checkpoint("apple/DiffuCoder-7B-Instruct")   # downloaded once into the hub cache

Hub ids go through ``huggingface_hub.snapshot_download`` (its cache, ``HF_HOME`` /
``HF_HUB_CACHE``, and its offline mode ``HF_HUB_OFFLINE=1``: the cached snapshot is used and
nothing is fetched). Only the files a checkpoint needs are downloaded (json, safetensors,
tokenizer files).

Not covered: private repositories' tokens beyond what huggingface_hub reads itself
(``HF_TOKEN``), ``.bin`` (pickle) weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
"""Where the shipped models live (one directory each)."""

CHECKPOINT_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model"]
"""What a download fetches: configs, weights, tokenizer files."""
TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "config.json", "*.txt", "*.model"]
"""What a tokenizer-only download fetches (no weights)."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def shipped_models() -> dict[str, Path]:
    """The models shipped with demask, by name (``tinycode-mdm``, ``tinycode-ar``)."""
    if not ASSETS.is_dir():
        return {}
    return {p.name: p for p in sorted(ASSETS.iterdir()) if (p / "config.json").is_file()}


def is_hub_id(spec: str) -> bool:
    """``org/name`` (one slash, no path-like start): what the hub calls a repo id."""
    return bool(_HUB_ID.match(spec)) and not spec.startswith((".", "/", "~"))


def resolve_checkpoint(spec: str | os.PathLike, *, revision: str | None = None, cache_dir: str | None = None,
                       offline: bool | None = None) -> Path:  # fmt: skip
    """The local directory of the checkpoint ``spec`` names (see the module docstring).

    A checkpoint directory wins over a shipped name or a hub id of the same spelling. ``offline``
    (default: the ``HF_HUB_OFFLINE`` environment variable) uses only the hub cache.
    """
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path
    text = str(spec)
    shipped = shipped_models()
    if text in shipped:
        return shipped[text]
    if path.is_dir():  # a directory without config.json: the loader names what is missing
        return path
    if is_hub_id(text):
        return _download(text, revision, cache_dir, _offline() if offline is None else offline)
    names = ", ".join(shipped) or "none installed"
    raise FileNotFoundError(
        f"no checkpoint at {text}: not a directory, not a shipped model (shipped: {names}) and not a Hugging Face "
        "hub id (org/name); give a checkpoint directory (expected config.json, model.safetensors, tokenizer.json)"
    )


def resolve_tokenizer(spec: str | os.PathLike, *, offline: bool | None = None) -> Path:
    """A tokenizer's local file or directory: a path, a shipped model's, or a hub id's
    tokenizer files only (a 7B checkpoint's tokenizer without its weights)."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    shipped = shipped_models()
    if str(spec) in shipped:
        return shipped[str(spec)]
    if is_hub_id(str(spec)):
        return _download(str(spec), None, None, _offline() if offline is None else offline, TOKENIZER_FILES)
    raise FileNotFoundError(
        f"no tokenizer at {spec}: not a file or directory, not a shipped model and not a Hugging Face hub id "
        "(org/name); give tokenizer.json, a checkpoint directory or a hub id"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(
    repo_id: str, revision: str | None, cache_dir: str | None, offline: bool, patterns: list[str] = CHECKPOINT_FILES
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        local = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=offline,
                                  allow_patterns=patterns)  # fmt: skip
    except LocalEntryNotFoundError:
        how = "offline mode (HF_HUB_OFFLINE) is on" if offline else "the hub could not be reached"
        raise FileNotFoundError(
            f"{repo_id} is not in the Hugging Face cache and {how}; download it where there is a network "
            f"(`huggingface-cli download {repo_id}`) or give a local checkpoint directory"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise FileNotFoundError(
            f"Hugging Face hub: no repository {repo_id!r} (revision {revision or 'main'}): "
            f"{type(exc).__name__}; check the id, or log in for a private one"
        ) from None
    return Path(local)


def saved_completion_length(checkpoint: str | os.PathLike) -> int | None:
    """The completion length a demask-trained checkpoint was trained for (``data:
    completion_length`` of the recipe.yaml saved with it), or None (no such file or key).
    Read as plain YAML: nothing is imported or loaded."""
    import yaml

    try:
        recipe = resolve_checkpoint(checkpoint, offline=True) / "recipe.yaml"
    except FileNotFoundError:
        return None
    if not recipe.is_file():
        return None
    raw = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    value = (raw.get("data") or {}).get("completion_length") if isinstance(raw, dict) else None
    return value if isinstance(value, int) and value > 0 else None
