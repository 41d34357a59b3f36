"""`demask demo`: the shipped tiny models on held-out TinyCode, side by side.

Per model (the autoregressive twin, the diffusion model adapted from it, the block-diffusion
model adapted from it) two rows: its best decoder and the fastest decoder within 0.01 pass@1
of it, both chosen beforehand on the validation split (the model's ``decoders.json``); the
demo reads the test split. Every row is decoded, executed in the sandbox and scored through
the ordinary evaluation pipeline (so every samples file can be re-scored by another harness),
and the decoding traces give the global AR-ness of the order each decoder chose.

Not covered: sampling at temperature > 0 (every row decodes greedily, one sample per task, so
pass@1 is exact for that decoder rather than an estimate).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED = {
    "autoregressive": ASSETS / "tinycode-ar",
    "diffusion": ASSETS / "tinycode-mdm",
    "block": ASSETS / "tinycode-block",
}
"""The shipped models, by demo key: the autoregressive twin, the full-attention diffusion model
adapted from it, and the block-diffusion model adapted from it (docs/adaptation.md)."""
LABELS = {
    "autoregressive": "AR twin",
    "diffusion": "diffusion (adapted)",
    "block": "block diffusion",
    "grpo": "coupled-GRPO",
}
# A GRPO-trained model ships here only when it beats the SFT one on the demo's decoder
# (docs/grpo.md has the comparisons); `demask demo --grpo DIR` adds the row for any checkpoint.
GRPO_SHIPPED = ASSETS / "tinycode-grpo"
POLICY_SHIPPED = ASSETS / "tinycode-policy"
"""A learned unmasking policy for tinycode-mdm (docs/learned_policy.md): a row of its own."""
WITHIN = 0.01
"""The fast row: the most tokens/s within this much pass@1 of the best (validation split)."""


@dataclass(frozen=True)
class DemoPolicy:
    """One row of the demo table: a name, the model it decodes, and its decoding settings."""

    name: str
    decode: dict[str, Any]
    model: str = "diffusion"  # a key of SHIPPED (or of the models passed to run_demo)


def model_decoders(model_dir: Path, gen_length: int) -> dict[str, Any]:
    """The model's ``decoders.json``: its best decoder and the fastest one within 0.01 pass@1
    of it, both chosen on the validation split (experiments/choose_decoders.py). Without the
    file: one token per step by confidence for a diffusion model (both rows the same)."""
    path = model_dir / "decoders.json"
    if path.is_file():
        return json.loads(path.read_text())
    plain = {"gen_length": gen_length, "policy": "confidence", "steps": gen_length}
    return {"best": plain, "fast": plain, "names": {"best": "confidence", "fast": "confidence"}}


def default_policies(dirs: dict[str, Path], gen_length: int) -> list[DemoPolicy]:
    """The rows `demask demo` shows: per model, its best decoder and (when another) the
    fastest within 0.01 pass@1 of it, as its ``decoders.json`` says."""
    rows = []
    for key, model_dir in dirs.items():
        # a GRPO checkpoint without decoders.json decodes as the model it was trained from
        own = (model_dir / "decoders.json").is_file() or key != "grpo" or "diffusion" not in dirs
        chosen = model_decoders(model_dir if own else dirs["diffusion"], gen_length)
        names = chosen.get("names", {})
        label = LABELS.get(key, key)
        rows.append(DemoPolicy(f"{label}: {names.get('best', 'best')}", chosen["best"], model=key))
        if chosen["fast"] != chosen["best"]:
            fast = names.get("fast", "fast")
            rows.append(DemoPolicy(f"{label}: {fast} (fastest within {WITHIN})", chosen["fast"], model=key))
        if key == "diffusion" and model_dir == SHIPPED["diffusion"] and (POLICY_SHIPPED / "config.json").is_file():
            rows.append(learned_policy_row(POLICY_SHIPPED, gen_length, label))
    return rows


def learned_policy_row(path: Path, gen_length: int, label: str) -> DemoPolicy:
    """The row of a trained policy folder: its block length (None: full diffusion, no cache;
    else semi-AR with the dual cache, as it was trained)."""
    block = json.loads((path / "config.json").read_text()).get("block_length")
    decode = {"gen_length": gen_length, "policy": "learned", "policy_options": {"path": str(path)},
              "block_length": block, "cache": "dual" if block else "none"}  # fmt: skip
    mode = f"blocks of {block}" if block else "full diffusion"
    return DemoPolicy(f"{label}: learned policy ({mode})", decode, model="diffusion")


@dataclass
class DemoRow:
    policy: str
    pass_at_1: float
    nfe_per_token: float
    tokens_per_s: float
    global_ar_ness: float
    samples_file: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "pass_at_1": self.pass_at_1,
            "nfe_per_token": self.nfe_per_token,
            "tokens_per_s": self.tokens_per_s,
            "global_ar_ness": self.global_ar_ness,
            "samples_file": self.samples_file,
            **self.extra,
        }


def _slug(name: str) -> str:
    """A folder name: lower case, every run of other characters one dash."""
    return re.sub(r"[^0-9a-z]+", "-", name.lower()).strip("-")


def heldout_tasks(model_dir: Path, split: str = "test") -> list:
    """A held-out TinyCode split (``test`` or ``validation``) of the version and settings the
    model at ``model_dir`` was trained on.

    The recipe saved beside the weights names the TinyCode settings; the held-out splits
    depend only on them (not on the size of the training split)."""
    from demask.training.recipe import load_recipe
    from demask.training.sources import TinyCodeSource, build_source

    recipe_file = model_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(
            f"{recipe_file} is missing: the demo reads the TinyCode settings from the recipe saved with the model"
        )
    data = load_recipe(recipe_file).data
    if data.source != "tinycode":
        raise ValueError(f"{recipe_file}: trained on {data.source!r}; the demo needs a TinyCode model")
    source = build_source(data)
    assert isinstance(source, TinyCodeSource)  # data.source is tinycode
    tasks = source.held_out(split)
    if not tasks:
        raise ValueError(
            f"{recipe_file}: its TinyCode version has no {split!r} split (v1 has train and test only); "
            "use split 'test' or a v2 model"
        )
    return tasks


def inference_dtype(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """bf16 on CUDA and where the CPU has native bf16 matmuls, fp32 elsewhere (emulated bf16
    is slower than fp32). docs/performance.md compares bf16 with fp32 on the shipped model.

    Native means the CPU flags (Linux: ``cpuinfo``) list avx512_bf16 or amx_bf16: oneDNN's
    own check (``_is_mkldnn_bf16_supported``) also says yes for plain AVX-512, where bf16 is
    emulated and the demo ran 2-2.5x slower than in fp32. Without a readable cpuinfo,
    oneDNN's check decides."""
    import torch

    if torch.cuda.is_available():
        return "bfloat16"
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        flags = None
    if flags is not None:
        return "bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"
    try:
        return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
    except (AttributeError, RuntimeError):
        return "float32"


def run_demo(
    models: dict[str, Any],
    tasks: list,
    out_dir: Path,
    policies: list[DemoPolicy],
    *,
    workers: int | None = None,
    batch_size: int = 64,
    log: Any = None,
) -> list[DemoRow]:
    """Evaluate every policy; ``models`` maps a DemoPolicy.model key to (model, tokenizer).

    Writes ``out_dir/tasks.jsonl``, one samples/results pair per policy, and
    ``out_dir/results.json``. Rows whose model is not in ``models`` are skipped.
    """
    import torch

    from demask.analysis import trace_arness
    from demask.decoding import DecodeConfig
    from demask.evaluation import evaluate
    from demask.evaluation.sampler import decoding_sampler
    from demask.execution import Sandbox, SandboxConfig
    from demask.tasks.jsonl import write_tasks_jsonl

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tasks_jsonl(out_dir / "tasks.jsonl", tasks)
    rows: list[DemoRow] = []
    sandbox_config = SandboxConfig.pool(3.0, workers)
    with Sandbox(sandbox_config) as sandbox, torch.inference_mode():
        for spec in policies:
            if spec.model not in models:
                continue
            model, tokenizer = models[spec.model]
            config = DecodeConfig.from_dict({**spec.decode, "trace": True, "temperature": 0.0})
            arness: list[float] = []

            def observe(output, sink=arness):
                sink.extend(v for v in trace_arness(output.trace)["global"] if not math.isnan(v))

            sampler = decoding_sampler(model, tokenizer, config, observe=observe)
            folder = out_dir / _slug(spec.name)
            start = time.perf_counter()
            result = evaluate(
                tasks,
                sampler,
                1,
                folder,
                sandbox,
                batch_size=batch_size,
                progress=False,
                run_info={"policy": spec.name, "decode": spec.decode, "model": spec.model},
            )
            arness_file = folder / "global_ar_ness.json"
            if arness:
                arness_file.write_text(json.dumps(arness) + "\n")
            elif arness_file.is_file():  # a resumed run decoded nothing new
                arness = json.loads(arness_file.read_text())
            gen = result.get("generation") or {}
            row = DemoRow(
                policy=spec.name,
                pass_at_1=result["pass_at_k"].get("pass@1", float("nan")),
                nfe_per_token=gen.get("nfe_per_token") or float("nan"),
                tokens_per_s=gen.get("tokens_per_second") or float("nan"),
                global_ar_ness=sum(arness) / len(arness) if arness else float("nan"),
                samples_file=str(folder / "samples.jsonl"),
                extra={"seconds": round(time.perf_counter() - start, 2)},
            )
            rows.append(row)
            if log is not None:
                log(row)
    (out_dir / "results.json").write_text(
        json.dumps({"policies": [r.as_json() for r in rows], "num_tasks": len(tasks)}, indent=1) + "\n"
    )
    return rows
