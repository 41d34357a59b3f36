"""Checkpoints in the Hugging Face layout: config.json + model.safetensors (or the sharded
``model.safetensors.index.json`` form) + tokenizer.json.

Qwen2 / Dream / DiffuCoder tensor names load as they are; LLaDA's OLMo-style names go through
:data:`LLADA_NAME_MAP`. The model is built on the ``meta`` device and each tensor is read,
converted to the requested dtype and placed on the requested device one at a time, so loading
a 7B checkpoint never holds two full copies of the weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from demask.model.config import ModelConfig
from demask.model.hub import resolve_checkpoint
from demask.model.tokenizer import Tokenizer
from demask.model.transformer import Transformer

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"

# LLaDA (OLMo, block_type "llama") name -> demask (Qwen2) name. {i} is the layer index.
LLADA_NAME_MAP = {
    "model.transformer.wte.weight": "model.embed_tokens.weight",
    "model.transformer.ln_f.weight": "model.norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",
    "model.transformer.blocks.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "model.transformer.blocks.{i}.q_proj.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "model.transformer.blocks.{i}.k_proj.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "model.transformer.blocks.{i}.v_proj.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "model.transformer.blocks.{i}.q_proj.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "model.transformer.blocks.{i}.k_proj.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "model.transformer.blocks.{i}.v_proj.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "model.transformer.blocks.{i}.attn_out.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "model.transformer.blocks.{i}.ff_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "model.transformer.blocks.{i}.ff_proj.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "model.transformer.blocks.{i}.up_proj.weight": "model.layers.{i}.mlp.up_proj.weight",
    "model.transformer.blocks.{i}.ff_out.weight": "model.layers.{i}.mlp.down_proj.weight",
}
# Buffers some exporters write that the backbone recomputes.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _compile_map(mapping: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    out = []
    for src, dst in mapping.items():
        pattern = re.escape(src).replace(re.escape("{i}"), r"(\d+)")
        out.append((re.compile(f"^{pattern}$"), dst))
    return out


_LLADA_RULES = _compile_map(LLADA_NAME_MAP)


def llada_to_demask_name(name: str) -> str:
    for pattern, dst in _LLADA_RULES:
        m = pattern.match(name)
        if m:
            return dst.replace("{i}", m.group(1)) if m.groups() else dst
    return name


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} (or int8 to load for int8 inference)")
    return _DTYPES[dtype]


def read_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected config.json plus {WEIGHTS} (or {WEIGHTS_INDEX} "
            "with its shards) and tokenizer.json in that directory"
        )
    return ModelConfig.from_hf_dict(read_json(file))


def read_json(file: Path) -> Any:
    """A JSON file's content; a file that is not valid JSON is an error naming it."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{file} is not valid JSON ({exc}); restore the file or download the checkpoint again"
        ) from None


def _weight_files(path: Path) -> list[Path]:
    if (path / WEIGHTS).is_file():
        return [path / WEIGHTS]
    if (path / WEIGHTS_INDEX).is_file():
        index = read_json(path / WEIGHTS_INDEX)
        shards = sorted(set(index["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{path / WEIGHTS_INDEX} lists shards that are missing: {missing}")
        return [path / s for s in shards]
    raise FileNotFoundError(f"no weights in {path}: expected {WEIGHTS} or {WEIGHTS_INDEX} (sharded safetensors)")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, refusing one this machine does not have (with the fix)."""
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc}); use e.g. cpu, cuda or cuda:1") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: this torch build or machine has no CUDA GPU; use --device cpu "
                "(or install the CUDA build of torch on a GPU machine)"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    return resolved


def load_model(
    path: str | Path, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu"
) -> Transformer:
    """Build the backbone from a checkpoint (a directory, a shipped model's name or a hub id:
    :func:`demask.model.hub.resolve_checkpoint`); dtype None keeps the stored dtype."""
    path = resolve_checkpoint(path)
    config = read_config(path)
    files = _weight_files(path)
    dtype = resolve_dtype(dtype)
    device = resolve_device(device)
    with torch.device("meta"):
        model = Transformer(config)
    expected = dict(model.named_parameters(remove_duplicate=False))
    rename = llada_to_demask_name if config.architecture == "llada" else (lambda n: n)
    loaded: set[str] = set()
    for file in files:
        with _open_weights(file) as f:
            for stored in f.keys():  # noqa: SIM118  # safe_open is not a dict: keys() is its API
                if _IGNORED.match(stored):
                    continue
                name = rename(stored)
                if name not in expected:
                    raise ValueError(
                        f"{file.name} has tensor {stored!r}, which a {config.architecture} "
                        f"model with {config.num_layers} layers does not have"
                    )
                want = tuple(expected[name].shape)
                have = tuple(f.get_slice(stored).get_shape())
                if want != have:
                    raise ValueError(f"tensor {stored!r} in {file.name} has shape {have}, the config implies {want}")
                tensor = f.get_tensor(stored)
                tensor = tensor.to(device=device, dtype=dtype or tensor.dtype)
                _assign(model, name, tensor)
                loaded.add(name)
    if config.tie_word_embeddings:
        loaded.add("lm_head.weight")
        if "model.embed_tokens.weight" in loaded:
            model.lm_head.weight = model.model.embed_tokens.weight
    missing = sorted(set(expected) - loaded)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint {path} lacks {len(missing)} tensors the config needs: {shown}")
    return model.eval()


@contextlib.contextmanager
def _open_weights(file: Path) -> Iterator[Any]:
    """safe_open, with a truncated or corrupt file reported as an error that names it."""
    try:
        handle = safe_open(str(file), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
        raise ValueError(f"{file} cannot be read as safetensors ({exc}); the file is truncated or corrupt: "
                         "download or copy it again") from None  # fmt: skip
    with handle as f:
        yield f


def _assign(model: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    module._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=tensor.is_floating_point())


def load_pretrained(
    path: str | Path, dtype: str | torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[Transformer, Tokenizer]:
    """Load model and tokenizer from a checkpoint: a directory, a shipped model's name
    (``tinycode-mdm``) or a Hugging Face hub id (:func:`demask.model.hub.resolve_checkpoint`).
    ``dtype="int8"``: dynamic int8 Linear layers on the CPU (demask.model.quantize).

    Special token ids missing from config.json are filled from the tokenizer, and vice versa,
    so a decoder can always read them from ``model.config``.
    """
    from demask.model.quantize import is_int8, quantize_int8

    int8 = is_int8(dtype)
    if int8 and torch.device(device).type != "cpu":
        raise ValueError(f"dtype int8 runs on the CPU (its kernels are fbgemm's), not on {device}: use device cpu")
    path = resolve_checkpoint(path)
    model = load_model(path, "float32" if int8 else dtype, device)
    if int8:
        quantize_int8(model)
    raw = read_json(path / "config.json")
    tokenizer = Tokenizer.from_dir(path, config=raw)
    cfg = model.config
    for role in ("mask", "pad", "eos", "bos"):
        key = f"{role}_token_id"
        if getattr(cfg, key) is None and getattr(tokenizer, key) is not None:
            setattr(cfg, key, getattr(tokenizer, key))
    return model, tokenizer


class SavableModel(Protocol):
    """What save_pretrained reads from a model: a Transformer, or any stand-in with its
    config and state dict (e.g. a gathered FSDP state dict)."""

    config: ModelConfig

    def state_dict(self) -> dict[str, Any]: ...


def save_pretrained(
    model: SavableModel,
    path: str | Path,
    tokenizer: Tokenizer | None = None,
    max_shard_bytes: int | None = None,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Write config.json, the weights (sharded above ``max_shard_bytes``) and the tokenizer.

    Files are written into a temporary directory next to ``path`` and moved into place, so a
    crash never leaves a half-written checkpoint where a complete one is expected.
    """
    if getattr(model, "quantized", None):
        raise ValueError("an int8-quantized model is not saved: save the float checkpoint it was loaded from")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # safetensors stores no shared tensors
    config = model.config.to_hf_dict()
    if tokenizer is not None:  # the special ids travel in config.json too
        for role in ("mask", "pad", "eos", "bos"):
            key = f"{role}_token_id"
            if config.get(key) is None:
                config[key] = getattr(tokenizer, key)
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    meta = {"format": "pt", "producer": "demask"}
    if max_shard_bytes is None or sum(t.numel() * t.element_size() for t in state.values()) <= max_shard_bytes:
        save_file(state, str(tmp / WEIGHTS), metadata=meta)
    else:
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for name, t in state.items():
            nbytes = t.numel() * t.element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][name] = t
            size += nbytes
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(tmp / fname), metadata=meta)
            weight_map.update({name: fname for name in shard})
        total = sum(t.numel() * t.element_size() for t in state.values())
        (tmp / WEIGHTS_INDEX).write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
        )
    if tokenizer is not None:
        tokenizer.save(tmp)
    for name, text in (extra_files or {}).items():
        (tmp / name).write_text(text)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            _rmtree(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _rmtree(old)
    else:
        os.replace(tmp, path)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
