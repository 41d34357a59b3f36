"""`demask analyze`: what a diffusion model's decoding does, on any checkpoint and task set.

Sections (``AnalyzeConfig.sections``), after DiffuCoder's appendix A.2:

- ``temperature``: local and global AR-ness@k (k = 1..4) of the decoding order, pass@1 and
  pass@k, at every temperature of ``temperatures`` (greedy: one sample per task; otherwise
  ``n_samples``), all from the same samples;
- ``policies``: the same AR-ness for every unmasking policy of ``policies`` (greedy);
- ``sink``: the entropy sink, the first step's confidence by completion position (all masked),
  for the checkpoint and the ``baseline``;
- ``heatmap``: at which step each position was committed, for the first ``heatmap_tasks``
  tasks, one panel per policy (greedy);
- ``halving``: pass@1 with one token per step (steps = L) and with half the steps, for the
  checkpoint and the ``baseline`` (the model before post-training);
- ``frontier``: mean NFE vs pass@1 of the heuristics of ``frontier`` swept over their knobs
  (and of ``learned_policy`` at three betas).

Every decode is an ordinary evaluation (:func:`demask.evaluation.evaluate`, sandboxed tests)
in ``out/evals/<setting>/``; each sample's record also holds its AR-ness and commit steps.
Identical settings share one folder, and a rerun reads finished folders back and continues
unfinished ones, so a long analysis resumes from what is on disk. Writes ``analysis.json``
(every figure, with 95% intervals over tasks), one PNG per section and ``summary.md``.

AR-ness with several tokens per step orders a step's tokens left to right (see
:mod:`demask.analysis.arness`). Not covered: AR-ness of autoregressive checkpoints is 1 by
construction, so their sink/heatmap/halving/frontier sections are skipped (said in the summary).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from demask.config import to_dict
from demask.decoding.config import DecodeConfig

SECTIONS = ("temperature", "policies", "sink", "heatmap", "halving", "frontier")
K_MAX = 4
BETAS = (0.5, 1.0, 2.0)


@dataclass
class AnalyzeConfig:
    """What `demask analyze` is asked to do."""

    checkpoint: str
    """Checkpoint to analyse: a directory, a shipped model's name (tinycode-mdm) or a hub id."""
    out: str
    """Output directory: evals/, analysis.json, the PNGs, summary.md. Run again to continue."""
    tasks: str = "tinycode:validation"
    """Benchmark name (tinycode:validation, humaneval, mbpp:test ...) or a HumanEval-shape .jsonl file."""
    task_data: str | None = None
    """Data file of the benchmark (e.g. a local mbpp.jsonl) instead of the cache/download."""
    limit: int | None = None
    """Only the first N tasks."""
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))
    """Which analyses to run (repeat the option): temperature, policies, sink, heatmap, halving, frontier."""
    temperatures: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.8, 1.2])
    """Temperatures of the temperature section (repeat the option; DiffuCoder: 0, 0.2, ..., 1.2)."""
    n_samples: int = 4
    """Samples per task at a temperature above 0 (pass@k for k up to this)."""
    policies: list[str] = field(default_factory=lambda: ["confidence", "margin", "entropy", "random"])
    """Unmasking policies of the policies and heatmap sections (registered names, default options)."""
    frontier: list[str] = field(default_factory=lambda: ["confidence", "threshold", "factor", "entropy-bound"])
    """Heuristics of the frontier section, each swept over its knob."""
    learned_policy: str | None = None
    """A trained unmasking-policy folder: added to the frontier (betas 0.5, 1, 2) and the policies."""
    baseline: str | None = None
    """The checkpoint before post-training (sink and halving sections compare against it)."""
    heatmap_tasks: int = 8
    """Tasks drawn in each decoding-order heatmap."""
    batch_size: int = 64
    """Prompts per decoding call."""
    seed: int = 0
    """Base seed; each (task, sample) gets its own from it."""
    timeout: float = 3.0
    """Wall-clock limit per program, seconds."""
    workers: int | None = None
    """Sandbox workers (None: the CPU count)."""
    device: str = "cpu"
    """Torch device of the model."""
    dtype: str | None = "float32"
    """Model dtype (None: as stored; shipped models store bf16, slow on CPUs without native bf16)."""
    progress: bool | None = None
    """Progress bars (None: on a terminal only)."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """The base decoding settings every section varies (`demask analyze` sets gen_length to the
    checkpoint's own completion length unless given; a block-diffusion checkpoint decodes in its
    own blocks unless told otherwise)."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        if not self.sections:
            raise ValueError(f"no section to run; choose from {', '.join(SECTIONS)}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples={self.n_samples} must be >= 1")
        if any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures {self.temperatures} must be >= 0 (0 = greedy)")
        if self.heatmap_tasks < 1:
            raise ValueError(f"heatmap_tasks={self.heatmap_tasks} must be >= 1")


# ---------------------------------------------------------------------------- per-sample fields


def decode_fields(row: Any) -> dict[str, Any]:
    """What a sample record keeps of its decoding trace (a RowTrace): AR-ness@1..4 and the
    step that committed each position (-1: filled by the early stop)."""
    from demask.analysis.arness import global_arness, local_arness

    steps = row.step_groups()
    arness = None
    if any(steps):
        arness = {
            "local": [local_arness(steps, k) for k in range(1, K_MAX + 1)],
            "global": [global_arness(steps, k) for k in range(1, K_MAX + 1)],
        }
    return {"arness": arness, "commit_steps": row.commit_steps()}


def traced_sampler(load: Callable[[], tuple[Any, Any]], config: DecodeConfig) -> Any:
    """A Sampler that decodes with ``config`` (traced) and adds :func:`decode_fields` to each
    sample; the model is loaded by ``load()`` on the first call only (a finished evaluation
    read back from disk never loads it)."""
    from demask.evaluation.sampler import decoding_sampler

    traced = replace(config, trace=True)
    state: dict[str, Any] = {}

    def sample(prompts: list[str], seeds: list[int]) -> list[Any]:
        if "inner" not in state:
            model, tokenizer = load()
            state["inner"] = decoding_sampler(model, tokenizer, traced, observe=lambda out: state.update(out=out))
        outputs = state["inner"](prompts, seeds)
        trace = state["out"].trace
        return [replace(o, extra=decode_fields(trace.row(i))) for i, o in enumerate(outputs)]

    return sample


# ---------------------------------------------------------------------------- aggregation


def setting_summary(results: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One setting's figures: pass@k totals, pass@1 and AR-ness@k with 95% intervals over
    tasks (each task's mean over its samples), mean NFE and tokens/s."""
    from demask.evaluation.stats import mean_interval

    per_task: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        per_task.setdefault(r["task_id"], []).append(r)

    def over_tasks(value: Callable[[dict[str, Any]], float | None]) -> dict[str, float]:
        means = []
        for recs in per_task.values():
            vals = [v for v in map(value, recs) if v is not None and not math.isnan(v)]
            if vals:
                means.append(sum(vals) / len(vals))
        iv = mean_interval(means)
        return {"mean": iv.mean, "ci95": iv.half_width, "n": iv.n}

    def arness(kind: str, k: int) -> Callable[[dict[str, Any]], float | None]:
        return lambda r: r["arness"][kind][k - 1] if r.get("arness") else None

    gen = results.get("generation") or {}
    return {
        "pass_at_k": results.get("pass_at_k", {}),
        "pass@1": over_tasks(lambda r: float(bool(r.get("passed")))),
        "local_arness": {f"@{k}": over_tasks(arness("local", k)) for k in range(1, K_MAX + 1)},
        "global_arness": {f"@{k}": over_tasks(arness("global", k)) for k in range(1, K_MAX + 1)},
        "mean_nfe": gen.get("mean_nfe"),
        "tokens_per_second": gen.get("tokens_per_second"),
        "num_tasks": results.get("num_tasks"),
        "num_samples": results.get("num_samples"),
        "per_task_pass": {tid: sum(bool(r.get("passed")) for r in recs) / len(recs) for tid, recs in per_task.items()},
        "per_task_global_arness": _per_task_mean(per_task, arness("global", 1)),
    }


def _per_task_mean(
    per_task: dict[str, list[dict[str, Any]]], value: Callable[[dict[str, Any]], float | None]
) -> dict[str, float]:
    """Each task's mean of ``value`` over its samples (tasks without a value left out)."""
    out = {}
    for tid, recs in per_task.items():
        vals = [v for v in map(value, recs) if v is not None]
        if vals:
            out[tid] = sum(vals) / len(vals)
    return out


def frontier_sweeps(gen_length: int, block_length: int | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Each heuristic's knob sweep as (label, decode options): confidence commits k tokens a
    step (steps = L / k, for the k whose steps split evenly over the blocks)."""
    blocks = gen_length // (block_length or gen_length)
    ks = [k for k in (1, 2, 4, 8) if gen_length % k == 0 and (gen_length // k) % blocks == 0]
    return {
        "confidence": [(f"{k}/step", {"policy": "confidence", "steps": gen_length // k}) for k in ks],
        "threshold": [
            (f"tau {t}", {"policy": "threshold", "policy_options": {"threshold": t}})
            for t in (0.7, 0.8, 0.9, 0.95, 0.99)
        ],
        "factor": [(f"f {f}", {"policy": "factor", "policy_options": {"factor": f}}) for f in (0.5, 1.0, 2.0, 4.0)],
        "entropy-bound": [
            (f"gamma {g}", {"policy": "entropy-bound", "policy_options": {"gamma": g}}) for g in (0.01, 0.1, 0.3, 1.0)
        ],
        "left-to-right-threshold": [
            (f"tau {t}", {"policy": "left-to-right-threshold", "policy_options": {"threshold": t}})
            for t in (0.8, 0.9, 0.95, 0.99)
        ],
    }


def _slug(label: str, decode: dict[str, Any]) -> str:
    key = json.dumps(decode, sort_keys=True, default=str)
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in label)[:60]
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


# ---------------------------------------------------------------------------- the run


class Analysis:
    """One `demask analyze` run (see the module docstring)."""

    def __init__(self, config: AnalyzeConfig, log: Callable[[str], None] = print) -> None:
        from demask.model import read_config
        from demask.model.hub import resolve_checkpoint

        self.config, self.log = config, log
        self.out = Path(config.out)
        self.checkpoint = resolve_checkpoint(config.checkpoint)
        self.model_config = read_config(self.checkpoint)
        decode = replace(config.decode, trace=False, temperature=0.0)
        block = self.model_config.block_size
        if block is not None and decode.block_length is None and decode.gen_length % block == 0:
            decode = replace(decode, block_length=block)  # a block model decodes in its own blocks
        self.decode = decode
        self._models: dict[str, tuple[Any, Any]] = {}
        self._tasks: list[Any] | None = None
        self._stack = contextlib.ExitStack()  # the sandbox, started by the first setting that runs tests
        self._sandbox: Any = None

    def sandbox(self) -> Any:
        if self._sandbox is None:
            from demask.execution import Sandbox, SandboxConfig

            self._sandbox = self._stack.enter_context(
                Sandbox(SandboxConfig.pool(self.config.timeout, self.config.workers))
            )
        return self._sandbox

    # ---- inputs, loaded when first needed
    @property
    def tasks(self) -> list[Any]:
        if self._tasks is None:
            from demask.tasks import load_tasks

            kwargs = {"path": Path(self.config.task_data)} if self.config.task_data else {}
            tasks = load_tasks(self.config.tasks, **kwargs)
            if self.config.limit is not None:
                if self.config.limit < 1:
                    raise ValueError(f"limit={self.config.limit} must be >= 1")
                tasks = tasks[: self.config.limit]
            if not tasks:
                raise ValueError(f"{self.config.tasks} holds no tasks; nothing to analyse")
            self._tasks = tasks
        return self._tasks

    def model(self, which: str = "checkpoint") -> tuple[Any, Any]:
        if which not in self._models:
            from demask.model import load_pretrained

            spec = self.config.checkpoint if which == "checkpoint" else self.config.baseline
            assert spec is not None
            self.log(f"analyze: loading {spec}")
            model, tok = load_pretrained(spec, dtype=self.config.dtype, device=self.config.device)
            model.eval()  # generate() and the sink's forward run without gradients
            self._models[which] = (model, tok)
        return self._models[which]

    # ---- one decoding setting
    def setting(
        self, label: str, options: dict[str, Any], n_samples: int = 1, which: str = "checkpoint"
    ) -> dict[str, Any]:
        """Evaluate the base decode updated with ``options`` (resumable); its summary."""
        from demask.evaluation.runner import evaluate, tasks_fingerprint
        from demask.evaluation.samples import read_samples

        decode = {**to_dict(self.decode), **options}
        for unused in ("trace", "seed"):  # the evaluation seeds every sample itself
            decode.pop(unused, None)
        config = DecodeConfig.from_dict(decode)
        if not config.policy_type.adaptive and decode.get("steps") is None:
            decode["steps"] = config.gen_length  # one setting, one folder: steps None means L
        spec = self.config.checkpoint if which == "checkpoint" else str(self.config.baseline)
        run_info = {"checkpoint": spec, "dtype": self.config.dtype, "decode": json.loads(json.dumps(decode)),
                    "seed": self.config.seed, "tasks": tasks_fingerprint(self.tasks)}  # fmt: skip
        folder = self.out / "evals" / _slug(which, run_info)  # one folder per distinct setting
        results_file = folder / "results.json"
        done = results_file.is_file() and _finished(results_file, len(self.tasks), n_samples)
        if not done:
            self.log(f"analyze: {label} ({folder.name})")
            results = evaluate(
                self.tasks,
                traced_sampler(lambda: self.model(which), config),
                n_samples,
                folder,
                self.sandbox(),
                seed=self.config.seed,
                batch_size=self.config.batch_size,
                timeout_s=self.config.timeout,
                ks=sorted({*(2**i for i in range(n_samples.bit_length()) if 2**i <= n_samples), n_samples}),
                run_info=run_info,
                progress=self.config.progress,
            )
        else:
            results = json.loads(results_file.read_text())
        records = [r for _, r in read_samples(folder / "samples.jsonl").records if r["sample_index"] < n_samples]
        return {"label": label, "folder": str(folder), "decode": decode, **setting_summary(results, records)}

    # ---- sections
    def check(self) -> None:
        """Refuse bad option values before hours of decoding, not when their section comes."""
        from demask.decoding.policies import policy_class
        from demask.model import read_config
        from demask.model.hub import resolve_checkpoint

        c = self.config
        sweeps = frontier_sweeps(self.decode.gen_length, self.decode.block_length)
        unknown = [h for h in c.frontier if h not in sweeps]
        if "frontier" in c.sections and unknown:
            raise ValueError(f"no frontier sweep for {', '.join(unknown)}; choose from {', '.join(sweeps)}")
        for name in c.policies:
            policy_class(name)  # an unknown name: "did you mean"
        if c.learned_policy is not None and not (Path(c.learned_policy) / "config.json").is_file():
            raise FileNotFoundError(
                f"--learned-policy {c.learned_policy} is not a policy folder (no config.json): give a "
                "`demask policy-train` checkpoint, e.g. runs/policy-full/checkpoint-0000200"
            )
        if c.baseline is not None and read_config(resolve_checkpoint(c.baseline)).causal:
            raise ValueError(
                f"--baseline {c.baseline} is autoregressive; the sink and halving sections compare diffusion "
                "models: give the diffusion checkpoint before post-training"
            )

    def run(self) -> dict[str, Any]:
        with self._stack:
            return self._run()

    def _run(self) -> dict[str, Any]:
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        causal = bool(self.model_config.causal)
        report: dict[str, Any] = {
            "checkpoint": self.config.checkpoint,
            "baseline": self.config.baseline,
            "tasks": self.config.tasks,
            "num_tasks": len(self.tasks),
            "decode": json.loads(json.dumps(to_dict(self.decode))),
            "sections": {},
            "skipped": {},
        }
        for name in self.config.sections:
            if causal and name != "temperature":
                report["skipped"][name] = "the checkpoint is autoregressive: it decodes left to right, one token a step"
                continue
            if name == "heatmap" and not self._policy_options():
                report["skipped"][name] = "no policy to draw (give --policies or --learned-policy)"
                continue
            if name == "halving" and self.decode.policy_type.adaptive:
                report["skipped"][name] = f"the base policy {self.decode.policy_name!r} chooses its own steps"
                continue
            report["sections"][name] = getattr(self, f"_{name}")(report)
            _write(self.out / "analysis.json", report)
        from demask.analysis.figures import draw_all, summary_markdown

        report["figures"] = draw_all(report, self.out)
        _write(self.out / "analysis.json", report)
        (self.out / "summary.md").write_text(summary_markdown(report))
        return report

    def _temperature(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for i, t in enumerate(self.config.temperatures):
            n = 1 if t == 0 else self.config.n_samples
            self.log(f"analyze: temperature {t:g} ({i + 1}/{len(self.config.temperatures)})")
            rows.append({"temperature": t, **self.setting(f"T{t:g}", {"temperature": t}, n)})
        return rows

    def _policy_options(self) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = [
            (p, {"policy": p, "policy_options": {}, "steps": None}) for p in self.config.policies
        ]
        if self.config.learned_policy:
            out.append(
                (
                    "learned",
                    {"policy": "learned", "policy_options": {"path": self.config.learned_policy}, "steps": None},
                )
            )
        return out

    def _policies(self, report: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"policy": name, **self.setting(f"policy-{name}", opts)} for name, opts in self._policy_options()]

    def _heatmap(self, report: dict[str, Any]) -> dict[str, Any]:
        panels = {}
        for name, opts in self._policy_options():
            got = self.setting(f"policy-{name}", opts)
            records = _records(got["folder"])
            first = [t.task_id for t in self.tasks[: self.config.heatmap_tasks]]
            by_id = {r["task_id"]: r for r in records if r["sample_index"] == 0}
            panels[name] = {
                "task_ids": first,
                "commit_steps": [by_id[t].get("commit_steps") for t in first],
                "passed": [bool(by_id[t].get("passed")) for t in first],
            }
        return {"panels": panels}

    def _sink(self, report: dict[str, Any]) -> dict[str, Any]:
        out = {"checkpoint": self._sink_profile("checkpoint")}
        if self.config.baseline:
            out["baseline"] = self._sink_profile("baseline")
        return out

    def _sink_profile(self, which: str) -> dict[str, Any]:
        from demask.evaluation.runner import tasks_fingerprint

        spec = self.config.checkpoint if which == "checkpoint" else str(self.config.baseline)
        key = {"checkpoint": spec, "dtype": self.config.dtype, "gen_length": self.decode.gen_length,
               "tasks": tasks_fingerprint(self.tasks)}  # fmt: skip
        cached = self.out / "evals" / f"sink-{_slug(which, key)}.json"
        if cached.is_file():
            return json.loads(cached.read_text())
        import torch

        from demask.analysis.arness import first_step_rows

        model, tok = self.model(which)
        length = self.decode.gen_length
        conf: list[torch.Tensor] = []
        ent: list[torch.Tensor] = []
        prompts = [tok.encode(t.prompt) for t in self.tasks]
        for lo in range(0, len(prompts), self.config.batch_size):
            rows = first_step_rows(model, prompts[lo : lo + self.config.batch_size], length)
            conf.append(rows["confidence"].cpu())
            ent.append(rows["entropy"].cpu())
        c, e = torch.cat(conf), torch.cat(ent)  # (N, L)
        head = c[:, 0]
        rest = c[:, 1:].mean(1) if length > 1 else c[:, 0]
        from demask.evaluation.stats import mean_interval

        gap = mean_interval((head - rest).tolist())
        from demask.evaluation.stats import t95

        n = c.shape[0]
        half = t95(n - 1) * c.std(0) / math.sqrt(n) if n > 1 else torch.zeros(c.shape[1])
        profile = {
            "confidence": c.mean(0).tolist(),
            "confidence_ci95": half.tolist(),
            "entropy": e.mean(0).tolist(),
            "first_minus_rest": {"mean": gap.mean, "ci95": gap.half_width, "n": gap.n},
            "argmax_position": int(c.mean(0).argmax()),
            "num_prompts": int(c.shape[0]),
        }
        _write(cached, profile)
        return profile

    def _halving(self, report: dict[str, Any]) -> dict[str, Any]:
        from demask.evaluation.stats import paired_difference

        length = self.decode.gen_length
        blocks = length // (self.decode.block_length or length)
        half = max(length // 2, blocks)
        out: dict[str, Any] = {}
        for which in ("checkpoint", "baseline"):
            if which == "baseline" and not self.config.baseline:
                continue
            full = self.setting("steps-L", {"steps": length}, which=which)
            halved = self.setting("steps-L2", {"steps": half}, which=which)
            d = paired_difference(full["per_task_pass"], halved["per_task_pass"])
            out[which] = {
                "steps": [length, half],
                "pass@1": [full["pass@1"], halved["pass@1"]],
                "drop": {"mean": -d.diff.mean, "ci95": d.diff.half_width, "n": d.n},
            }
        return out

    def _frontier(self, report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        sweeps = frontier_sweeps(self.decode.gen_length, self.decode.block_length)
        curves: dict[str, list[dict[str, Any]]] = {}
        for name in self.config.frontier:
            for label, opts in sweeps[name]:
                opts = {"policy_options": {}, "steps": None, **opts}
                got = self.setting(f"frontier-{name}-{label}", opts)
                curves.setdefault(name, []).append({"setting": label, **_point(got)})
        if self.config.learned_policy:
            for beta in BETAS:
                opts = {"policy": "learned", "steps": None,
                        "policy_options": {"path": self.config.learned_policy, "beta": beta}}  # fmt: skip
                got = self.setting(f"frontier-learned-beta{beta:g}", opts)
                curves.setdefault("learned", []).append({"setting": f"beta {beta:g}", **_point(got)})
        return curves


def _point(got: dict[str, Any]) -> dict[str, Any]:
    return {"pass@1": got["pass@1"], "nfe": got["mean_nfe"], "folder": got["folder"],
            "per_task_pass": got["per_task_pass"]}  # fmt: skip


def _finished(results_file: Path, num_tasks: int, n_samples: int) -> bool:
    res = json.loads(results_file.read_text())
    return res.get("num_tasks") == num_tasks and res.get("num_samples") == num_tasks * n_samples


def _records(folder: str) -> list[dict[str, Any]]:
    from demask.evaluation.samples import read_samples

    return [r for _, r in read_samples(Path(folder) / "samples.jsonl").records]


def _write(path: Path, obj: Any) -> None:
    from demask.evaluation.runner import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def run_analysis(config: AnalyzeConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every section of ``config`` (resumable); the analysis dict (also analysis.json)."""
    return Analysis(config, log).run()
