"""`demask reproduce`: the seed papers' claims, measured again at TinyCode scale, as one report.

Claims (each a section of ``report.md``, with its figure, its measurements with 95% intervals,
a verdict and the commands that produced it):

- **a** coupled-GRPO's complementary masks (DiffuCoder) give a lower-variance log-prob
  estimate than two independent masks at the same cost, and a better model after GRPO than
  the de-coupled, full-mask and d1 estimators;
- **b** a higher sampling temperature lowers the AR-ness of the decoding order and raises pass@k;
- **c** the entropy sink: at the first step the model is most sure right after the prompt;
- **d** a learned unmasking policy beats the heuristics at low NFE in full diffusion;
- **e** RRTF (rank loss + SFT on the teacher) beats SFT on the same pairs (PanGu-Coder2);
- **f** a diffusion model decodes faster than its autoregressive twin at equal quality.

Every step is a `demask` command run as a subprocess (``python -m demask.cli.main ...``:
``analyze``, ``eval``, ``grpo``, ``rrtf``), so the report runs the same code a user runs;
only claim a's variance measurement calls the library's estimators directly. A finished step
leaves ``logs/<step>.done`` and the commands resume themselves, so a rerun continues where an
interrupted one stopped; a finished claim is kept in ``claims/<key>.json``. A claim whose
pieces are missing (a shipped model or policy not installed) or whose step fails says so in
its section; the other claims still run.

Verdicts: **reproduced** when the 95% interval of the measured effect lies on the claimed side
of no effect, **not reproduced** when it lies on the other side, **inconclusive** otherwise.
``--quick`` uses fewer tasks and samples and skips the GRPO training of claim a (its verdict
then rests on the variance alone and says so).
"""

from __future__ import annotations

import json
import math
import random
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from demask.evaluation.stats import mean_interval

CLAIM_KEYS = ("a", "b", "c", "d", "e", "f")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
ESTIMATORS = ("coupled", "decoupled", "full_mask", "d1")


@dataclass(frozen=True)
class Budget:
    """How much each claim measures (``--quick`` or the full report)."""

    tasks: int | None
    """Held-out tasks for the evaluations of claims a, d, e and f (None: the whole split)."""
    variance_rows: int
    variance_seeds: int
    grpo_seconds: int
    """Training time per estimator for claim a's GRPO runs (0: not run)."""
    temperature_tasks: int
    temperatures: tuple[float, ...]
    temperature_samples: int
    sink_tasks: int
    rrtf_prompts: int
    rrtf_samples: int
    rrtf_temperatures: tuple[float, ...]
    rrtf_steps: int


QUICK = Budget(tasks=64, variance_rows=12, variance_seeds=16, grpo_seconds=0, temperature_tasks=48,
               temperatures=(0.0, 0.2, 1.2), temperature_samples=4, sink_tasks=64, rrtf_prompts=32, rrtf_samples=2,
               rrtf_temperatures=(1.0,), rrtf_steps=16)  # fmt: skip
FULL = Budget(tasks=160, variance_rows=48, variance_seeds=32, grpo_seconds=240, temperature_tasks=160,
              temperatures=(0.0, 0.2, 0.6, 1.2), temperature_samples=8, sink_tasks=324,
              rrtf_prompts=160, rrtf_samples=4, rrtf_temperatures=(0.5, 1.0), rrtf_steps=100)  # fmt: skip


@dataclass
class ReproduceConfig:
    """What `demask reproduce` is asked to do."""

    out: str = "runs/reproduce"
    """Output directory: report.md, report.json, figures/, and every step's files. Run again to continue."""
    quick: bool = False
    """A smaller report (about 10 minutes on 2 cores): fewer tasks and samples, no GRPO training."""
    claims: list[str] = field(default_factory=lambda: list(CLAIM_KEYS))
    """Which claims to measure (repeat the option): a, b, c, d, e, f."""
    split: str = "test"
    """The TinyCode split the claims are measured on (validation or test)."""
    redo: bool = False
    """Measure every claim again (the steps' own files are still reused)."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.claims if c not in CLAIM_KEYS]
        if unknown:
            raise ValueError(f"unknown claim(s) {', '.join(unknown)}; choose from {', '.join(CLAIM_KEYS)}")
        if self.split not in ("validation", "test"):
            raise ValueError(f"split={self.split!r}: use validation or test")


class StepFailed(RuntimeError):
    """A `demask` command of a claim failed; its message names the log."""


class Missing(RuntimeError):
    """A piece a claim needs is not installed (e.g. the shipped learned policy)."""


# ------------------------------------------------------------------------------ statistics


def verdict(mean: float, half_width: float, expect: int, n: float | None = None) -> str:
    """``expect`` +1: the claim says the effect is positive; -1: negative (see module doc).
    Fewer than two measured items (``n``) have no interval: inconclusive."""
    if math.isnan(mean) or math.isnan(half_width) or (n is not None and n < 2):
        return "inconclusive"
    signed = expect * mean
    if signed - half_width > 0:
        return "reproduced"
    if signed + half_width < 0:
        return "not reproduced"
    return "inconclusive"


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of parts: any part not reproduced -> not reproduced; all
    reproduced -> reproduced; otherwise inconclusive."""
    if "not reproduced" in verdicts:
        return "not reproduced"
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    return "inconclusive"


def paired(base: Mapping[str, float], other: Mapping[str, float]) -> dict[str, float]:
    """other - base over the common tasks: mean, 95% t half-width, n."""
    from demask.evaluation.stats import paired_difference

    d = paired_difference(base, other)
    return {"mean": d.diff.mean, "ci95": d.diff.half_width, "n": d.n}


def bootstrap(
    n: int, statistic: Callable[[Sequence[int]], float], draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """``statistic`` of all ``n`` paired items with a percentile-bootstrap 95% interval over them
    (resamples where the statistic is undefined, NaN, are dropped)."""
    rng = random.Random(seed)
    got = sorted(
        v for v in (statistic([rng.randrange(n) for _ in range(n)]) for _ in range(draws)) if not math.isnan(v)
    )
    if not got:
        return {"ratio": math.nan, "low": math.nan, "high": math.nan, "n": n}
    return {"ratio": statistic(range(n)), "low": got[int(0.025 * len(got))], "high": got[int(0.975 * len(got)) - 1],
            "n": n}  # fmt: skip


def bootstrap_ratio(num: Sequence[float], den: Sequence[float], draws: int = 2000, seed: int = 0) -> dict[str, float]:
    """mean(num) / mean(den) over paired items with a percentile-bootstrap 95% interval
    (reported as the interval's ends: low, high)."""
    if len(num) != len(den) or not num:
        raise ValueError("bootstrap_ratio needs two equally long, non-empty sequences")

    def ratio(idx: Sequence[int]) -> float:
        d = sum(den[i] for i in idx)
        return sum(num[i] for i in idx) / d if d else math.nan

    return bootstrap(len(num), ratio, draws, seed)


def per_task_pass(results: Mapping[str, Any], key: str = "pass@1") -> dict[str, float]:
    """Each task's pass@k (k from ``key``) from an evaluation's results.json."""
    tasks = results["tasks"]
    if key == "pass@1":
        return {tid: e["c"] / e["n"] for tid, e in tasks.items() if e["n"]}
    return {tid: e[key] for tid, e in tasks.items() if key in e}


# ------------------------------------------------------------------------------ the run


class Context:
    """The output folder, the budget, and the `demask` commands of the claim being measured."""

    def __init__(self, out: Path, budget: Budget, split: str, log: Callable[[str], None]) -> None:
        self.out, self.budget, self.split, self.log = out, budget, split, log
        self.commands: list[str] = []

    def cli(self, step: str, args: Sequence[Any]) -> None:
        """Run ``demask ARGS`` once (``logs/<step>.done`` marks it finished)."""
        args = [str(a) for a in args]
        self.commands.append("demask " + shlex.join(args))
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        done, log_file = logs / f"{step}.done", logs / f"{step}.log"
        if done.is_file():
            return
        self.log(f"reproduce: {step}: demask {shlex.join(args)}")
        start = time.perf_counter()
        with log_file.open("a") as f:
            rc = subprocess.call([sys.executable, "-m", "demask.cli.main", *args], stdout=f, stderr=subprocess.STDOUT)
        if rc != 0:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise StepFailed(f"`demask {shlex.join(args)}` exited with {rc} (log {log_file}): " + " / ".join(tail))
        done.write_text(f"{time.perf_counter() - start:.1f} s\n")

    def eval(self, name: str, checkpoint: str, decode: Mapping[str, Any], n_samples: int = 1) -> dict[str, Any]:
        """`demask eval` of ``checkpoint`` on the split (greedy unless ``decode`` says otherwise)."""
        folder = self.out / "evals" / name
        args = ["eval", "--checkpoint", checkpoint, "--tasks", f"tinycode:{self.split}", "--n-samples", n_samples,
                "--out", folder, "--batch-size", 32, "--dtype", "float32", *set_args(decode)]  # fmt: skip
        if self.budget.tasks is not None:
            args += ["--limit", self.budget.tasks]
        self.cli(f"eval-{name}", args)
        return json.loads((folder / "results.json").read_text())

    def figure(self, key: str) -> Path:
        path = self.out / "figures" / f"claim-{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def set_args(options: Mapping[str, Any]) -> list[str]:
    """``--set key=value`` for each decoding option (values as JSON, which YAML reads)."""
    out: list[str] = []
    for key, value in options.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


def shipped_decoder(name: str, which: str = "best") -> dict[str, Any]:
    """A shipped model's chosen decoder (its decoders.json), or greedy one-token steps."""
    from demask.model.hub import resolve_checkpoint

    try:
        path = resolve_checkpoint(name, offline=True) / "decoders.json"
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise Missing(f"the shipped model {name} is not installed ({exc})") from None
    if not path.is_file():
        return {"gen_length": 48}
    chosen = json.loads(path.read_text())
    return dict(chosen.get(which) or chosen["best"])


def run_reproduce(config: ReproduceConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the claims of ``config`` (resumable) and write report.md / report.json (with
    every claim measured in this folder so far, not only those asked for now)."""
    from demask.evaluation.runner import write_json

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out, config)
    budget = QUICK if config.quick else FULL
    results: dict[str, dict[str, Any]] = {}
    for key in CLAIM_KEYS:
        cached = out / "claims" / f"{key}.json"
        saved = _read_claim(cached)
        if key not in config.claims or (saved is not None and not config.redo):
            if saved is not None:
                results[key] = saved
            continue
        ctx = Context(out, budget, config.split, log)
        log(f"reproduce: claim {key}: {CLAIMS[key][0]}")
        start = time.perf_counter()
        try:
            got = CLAIMS[key][1](ctx)
        except Missing as exc:
            results[key] = {"status": "missing", "reason": str(exc), "commands": ctx.commands}
            continue
        except StepFailed as exc:
            results[key] = {"status": "failed", "reason": str(exc), "commands": ctx.commands}
            continue
        except Exception as exc:  # one claim's bug must not cost the others their sections
            results[key] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "commands": ctx.commands}
            continue
        got = {"status": "measured", **got, "commands": ctx.commands, "seconds": round(time.perf_counter() - start)}
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json(cached, _finite(got))
        results[key] = _finite(got)
    report = {"quick": config.quick, "split": config.split, "budget": asdict(budget), "claims": results}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report))
    return report


def _check_same_run(out: Path, config: ReproduceConfig) -> None:
    """A folder holds one budget and one split: mixing them would report one under the other's name."""
    from demask.evaluation.runner import write_json

    mine = {"quick": config.quick, "split": config.split}
    path = out / "run.json"
    if path.is_file():
        theirs = json.loads(path.read_text())
        if theirs != mine:

            def name(r: Mapping[str, Any]) -> str:
                return f"{'a --quick' if r.get('quick') else 'a full'} report on the {r.get('split')} split"

            raise ValueError(
                f"{out} holds {name(theirs)}; this run asks for {name(mine)}: give another --out "
                f"(e.g. {out}-{'quick' if config.quick else 'full'}-{config.split})"
            )
    else:
        write_json(path, mine)


def _read_claim(path: Path) -> dict[str, Any] | None:
    """A saved claim, or None when there is none or it cannot be read (then it is measured again)."""
    if not path.is_file():
        return None
    try:
        got = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and got.get("status") == "measured" else None


def _finite(obj: Any) -> Any:
    """NaN and infinities as None (valid JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------ the claims

MDM, BLOCK, AR = "tinycode-mdm", "tinycode-block", "tinycode-ar"


def estimator_variance(model: Any, rows: Sequence[tuple[list[int], list[int]]], seeds: int) -> dict[str, list[float]]:
    """Per estimator, per row: the variance across ``seeds`` mask draws of the sequence
    log-prob estimate (the sum over completion tokens) of prompt + completion."""
    import torch

    from demask.training.rl.estimators import get_estimator

    out: dict[str, list[float]] = {}
    with torch.no_grad():
        for name in ESTIMATORS:
            est = get_estimator(name)
            variances = []
            for prompt, completion in rows:
                ids = torch.tensor([prompt + completion])
                draws = [
                    float(est.log_probs(model, ids, None, len(prompt), seed=s).double().sum()) for s in range(seeds)
                ]
                mean = sum(draws) / len(draws)
                variances.append(sum((d - mean) ** 2 for d in draws) / (len(draws) - 1))
            out[name] = variances
    return out


def _variance_rows(tok: Any, tasks: Sequence[Any], n: int, eos: int | None) -> list[tuple[list[int], list[int]]]:
    rows = []
    for t in tasks[:n]:  # prompt and solution tokenized apart, as in training
        rows.append((tok.encode(t.prompt), tok.encode(t.canonical_solution) + ([eos] if eos is not None else [])))
    return rows


def claim_a(ctx: Context) -> dict[str, Any]:
    b = ctx.budget
    cache = ctx.out / "a" / "variance.json"
    if cache.is_file():
        var = json.loads(cache.read_text())
    else:
        from demask.model import load_pretrained
        from demask.tasks import load_tasks

        ctx.log(f"reproduce: a: estimator variance, {b.variance_rows} rows x {b.variance_seeds} mask seeds")
        model, tok = load_pretrained(MDM, dtype="float32")
        model.eval()
        rows = _variance_rows(tok, load_tasks(f"tinycode:{ctx.split}"), b.variance_rows, model.config.eos_token_id)
        var = estimator_variance(model, rows, b.variance_seeds)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(var) + "\n")
    measurements = []
    for name in ESTIMATORS:
        iv = mean_interval(var[name])
        measurements.append({"name": f"variance of the sequence log-prob, {name}", "mean": iv.mean,
                             "ci95": iv.half_width, "n": iv.n})  # fmt: skip
    ratio = bootstrap_ratio(var["coupled"], var["decoupled"])
    measurements.append({"name": "variance ratio coupled / decoupled (same 3 forwards)", "mean": ratio["ratio"],
                         "low": ratio["low"], "high": ratio["high"], "n": ratio["n"]})  # fmt: skip
    parts = [
        "reproduced" if ratio["high"] < 1 else "not reproduced" if ratio["low"] > 1 else "inconclusive",
    ]
    notes = [
        "Variance: the shipped tinycode-mdm scores held-out prompts with their reference solutions; "
        f"{b.variance_seeds} mask seeds per row; ratio with a bootstrap interval over rows. full_mask is "
        "deterministic (variance 0) and d1 masks the prompt only: they estimate other quantities. "
        "On a tiny random Transformer with random sequences (experiments/estimator_variance.py) the coupled "
        "spread is about half the de-coupled one; the ratio here is the trained model on real code."
    ]
    panels: list[tuple[dict[str, tuple[float, float]], str]] = [
        ({n: _pair(mean_interval(var[n])) for n in ESTIMATORS if n != "d1"}, "variance of the sequence log-prob")
    ]
    if b.grpo_seconds:
        decoder = shipped_decoder(MDM)
        base = per_task_pass(ctx.eval("a-sft", MDM, decoder))
        after: dict[str, dict[str, float]] = {}
        for est in ESTIMATORS:
            run_dir = ctx.out / "a" / f"grpo-{est}"
            # fp32: a CPU without native bf16 trains faster in it
            args = ["grpo", "--recipe", "tinycode/grpo_estimators", "--estimator", est, "--out", run_dir,
                    "--max-seconds", b.grpo_seconds, "--seed", 0, "--resume",
                    "--set", "train.precision=fp32"]  # fmt: skip
            ctx.cli(f"a-grpo-{est}", args)
            after[est] = per_task_pass(ctx.eval(f"a-grpo-{est}", str(_latest(run_dir)), decoder))
        scores = {"SFT": _pair(mean_interval(base.values()))}
        scores.update({e: _pair(mean_interval(after[e].values())) for e in ESTIMATORS})
        panels.append((scores, "greedy pass@1 after GRPO"))
        for est in ESTIMATORS:
            d = paired(base, after[est])
            measurements.append({"name": f"pass@1 after GRPO ({est}) minus the SFT model", **d})
        for est in ESTIMATORS[1:]:
            d = paired(after[est], after["coupled"])
            measurements.append({"name": f"pass@1 after GRPO: coupled minus {est}", **d})
            parts.append(verdict(d["mean"], d["ci95"], +1, d["n"]))
        notes.append(
            f"GRPO: recipe tinycode/grpo_estimators, {b.grpo_seconds} s of training per estimator, one seed; "
            "greedy pass@1 with the shipped model's decoder."
        )
    else:
        notes.append("GRPO training was not run (--quick): the verdict rests on the variance alone.")
    _bar_figure(ctx.figure("a"), panels, "claim a: log-prob estimators (d1's variance is off the scale: see the table)")
    return {"verdict": combine(parts), "measurements": measurements, "notes": notes, "figure": "claim-a.png"}


def _latest(run_dir: Path) -> Path:
    from demask.training.checkpointing import latest_checkpoint

    found = latest_checkpoint(run_dir)
    if found is None:
        raise StepFailed(f"{run_dir} holds no checkpoint after training")
    return found


def claim_b(ctx: Context) -> dict[str, Any]:
    b = ctx.budget
    folder = ctx.out / "b" / "analyze"
    temps = [a for t in b.temperatures for a in ("--temperatures", t)]
    ctx.cli("b-analyze", ["analyze", "--checkpoint", MDM, "--tasks", f"tinycode:{ctx.split}", "--out", folder,
                          "--limit", b.temperature_tasks, "--sections", "temperature", *temps,
                          "--n-samples", b.temperature_samples, "--block-length", 24, "--cache", "dual"])  # fmt: skip
    rows = json.loads((folder / "analysis.json").read_text())["sections"]["temperature"]
    sampled = sorted((r for r in rows if r["temperature"] > 0), key=lambda r: r["temperature"])  # T = 0: one sample
    if len(sampled) < 2:
        raise ValueError(f"claim b needs two temperatures above 0, got {[r['temperature'] for r in rows]}")
    low, high = sampled[0], sampled[-1]
    k = f"pass@{b.temperature_samples}"
    ar = paired(low["per_task_global_arness"], high["per_task_global_arness"])
    pk = paired(
        per_task_pass(json.loads((Path(low["folder"]) / "results.json").read_text()), k),
        per_task_pass(json.loads((Path(high["folder"]) / "results.json").read_text()), k),
    )
    t0, t1 = low["temperature"], high["temperature"]
    measurements = [
        {"name": f"global AR-ness@1 at T={t}", **r["global_arness"]["@1"]} for t, r in ((t0, low), (t1, high))
    ]
    measurements += [
        {"name": f"global AR-ness@1, T={t1:g} minus T={t0:g} (paired over tasks)", **ar},
        {"name": f"{k}, T={t1:g} minus T={t0:g} (paired over tasks)", **pk},
    ]
    for r in rows:
        measurements.append({"name": f"{k} at T={r['temperature']:g}", "mean": r["pass_at_k"].get(k)})
    shutil.copyfile(folder / "temperature.png", ctx.figure("b"))
    parts = [verdict(ar["mean"], ar["ci95"], -1, ar["n"]), verdict(pk["mean"], pk["ci95"], +1, pk["n"])]
    notes = [
        f"tinycode-mdm, confidence policy, one token per step in two blocks of 24 (dual cache); "
        f"{b.temperature_samples} samples per task and temperature (greedy T = 0: one); the verdict compares the "
        f"lowest and highest temperature above 0. AR-ness part: {parts[0]}, pass@k part: {parts[1]}."
    ]
    return {"verdict": combine(parts), "measurements": measurements, "notes": notes, "figure": "claim-b.png"}


def claim_c(ctx: Context) -> dict[str, Any]:
    from demask.analysis.figures import draw_sink

    profiles, measurements, parts = {}, [], []
    for model in (MDM, BLOCK):
        folder = ctx.out / "c" / model
        args = ["analyze", "--checkpoint", model, "--tasks", f"tinycode:{ctx.split}", "--out", folder,
                "--limit", ctx.budget.sink_tasks, "--sections", "sink"]  # fmt: skip
        ctx.cli(f"c-sink-{model}", args)
        prof = json.loads((folder / "analysis.json").read_text())["sections"]["sink"]["checkpoint"]
        profiles[model] = prof
        gap = prof["first_minus_rest"]
        measurements.append({"name": f"{model}: first-step confidence at position 0 minus the rest", **gap})
        measurements.append({"name": f"{model}: most confident position", "mean": prof["argmax_position"]})
        parts.append(verdict(gap["mean"], gap["ci95"], +1, gap["n"]))
        parts.append("reproduced" if prof["argmax_position"] == 0 else "not reproduced")
    draw_sink(profiles, ctx.figure("c"))
    notes = ["One forward with the whole completion masked; per prompt, the confidence at the first completion "
             "position minus the mean over the others (95% t-interval over prompts); and the most confident "
             "position of the mean profile must be the first (ties: the first)."]  # fmt: skip
    return {"verdict": combine(parts), "measurements": measurements, "notes": notes, "figure": "claim-c.png"}


def claim_d(ctx: Context) -> dict[str, Any]:
    from demask.model.hub import ASSETS

    policy = ASSETS / "tinycode-policy"
    if not (policy / "config.json").is_file():
        raise Missing(
            f"no shipped learned policy at {policy} (train one: demask policy-train --recipe tinycode/policy_full)"
        )
    full = {"gen_length": 48, "cache": "none"}
    settings = {
        "learned policy (shipped)": {"policy": "learned", "policy_options": {"path": str(policy)}},
        "threshold 0.9": {"policy": "threshold", "policy_options": {"threshold": 0.9}},
        "threshold 0.95": {"policy": "threshold", "policy_options": {"threshold": 0.95}},
        "factor 1": {"policy": "factor", "policy_options": {"factor": 1.0}},
        "factor 0.5": {"policy": "factor", "policy_options": {"factor": 0.5}},
        "entropy-bound 0.3": {"policy": "entropy-bound", "policy_options": {"gamma": 0.3}},
    }
    points = {}
    for label, opts in settings.items():
        res = ctx.eval("d-" + label.split(" (")[0].replace(" ", "-"), MDM, {**full, **opts})
        points[label] = {"pass": per_task_pass(res), "nfe": res["generation"]["mean_nfe"]}
    mine = points.pop("learned policy (shipped)")
    cheap = {k: p for k, p in points.items() if p["nfe"] <= mine["nfe"] * 1.05}
    pool = cheap or {min(points, key=lambda k: points[k]["nfe"]): points[min(points, key=lambda k: points[k]["nfe"])]}
    best = max(pool, key=lambda k: sum(pool[k]["pass"].values()))
    d = paired(pool[best]["pass"], mine["pass"])
    result = verdict(d["mean"], d["ci95"], +1, d["n"])
    if not cheap and result == "not reproduced":
        result = "inconclusive"  # losing to a heuristic that spends more NFE says nothing about equal NFE
    against = (
        f"{best} (the best heuristic at <= its NFE)"
        if cheap
        else f"{best} (the cheapest heuristic, at {pool[best]['nfe']:.2f} NFE: more than the policy's)"
    )
    measurements = [{"name": "learned policy: pass@1", **_iv(mean_interval(mine["pass"].values())),
                     "nfe": mine["nfe"]}]  # fmt: skip
    for label, p in points.items():
        measurements.append({"name": f"{label}: pass@1", **_iv(mean_interval(p["pass"].values())), "nfe": p["nfe"]})
    measurements.append({"name": f"learned minus {against}, paired", **d})
    _frontier_figure(ctx.figure("d"), {"learned policy (shipped)": mine, **points})
    notes = [
        "Full diffusion (one block of 48, no cache), greedy tokens, the shipped policy at beta 1 against heuristics; "
        f"compared with the best heuristic whose mean NFE is at most 5% above the policy's ({mine['nfe']:.2f})"
        + ("" if cheap else "; none was that cheap, so the cheapest heuristic")
        + ". The paper's margin is about 14 points at 13 NFE on GSM8K (LLaDA)."
    ]
    return {"verdict": result, "measurements": measurements, "notes": notes, "figure": "claim-d.png"}


def _pair(iv: Any) -> tuple[float, float]:
    return (iv.mean, iv.half_width)


def _iv(iv: Any) -> dict[str, float]:
    return {"mean": iv.mean, "ci95": iv.half_width, "n": iv.n}


def claim_e(ctx: Context) -> dict[str, Any]:
    b = ctx.budget
    rr = ctx.out / "e" / "rrtf"
    common: list[Any] = ["--recipe", "tinycode/rrtf", "--out", rr, "--set", f"sample.max_tasks={b.rrtf_prompts}",
                         "--set", f"sample.n={b.rrtf_samples}",
                         "--set", f"sample.temperatures={list(b.rrtf_temperatures)}"]  # fmt: skip
    ctx.cli("e-sample", ["rrtf", "sample", *common])
    ctx.cli("e-rank", ["rrtf", "rank", *common])
    decoder = shipped_decoder(MDM)
    base = per_task_pass(ctx.eval("e-student", MDM, decoder))
    trained = {}
    for alg in ("rrtf", "sft"):
        train_dir = rr / f"train-{alg}"
        ctx.cli(f"e-train-{alg}", ["rrtf", "train", *common, "--set", f"algorithm={alg}",
                                   "--set", f"train.out_dir={train_dir}", "--set", f"train.max_steps={b.rrtf_steps}",
                                   "--set", "eval.enabled=false", "--resume"])  # fmt: skip
        trained[alg] = per_task_pass(ctx.eval(f"e-{alg}", str(_latest(train_dir)), decoder))
    d = paired(trained["sft"], trained["rrtf"])
    measurements = [
        {"name": "RRTF minus SFT on the same pairs (paired over tasks)", **d},
        {"name": "RRTF minus the untrained student", **paired(base, trained["rrtf"])},
        {"name": "SFT minus the untrained student", **paired(base, trained["sft"])},
    ]
    bars = {"student": _pair(mean_interval(base.values())), "SFT": _pair(mean_interval(trained["sft"].values())),
            "RRTF": _pair(mean_interval(trained["rrtf"].values()))}  # fmt: skip
    _bar_figure(ctx.figure("e"), [(bars, "greedy pass@1 (95% CI over tasks)")], "claim e: RRTF vs SFT")
    notes = [
        f"Student tinycode-mdm, teachers tinycode-ar and tinycode-block (recipe tinycode/rrtf) on "
        f"{b.rrtf_prompts} fresh prompts x {b.rrtf_samples} samples x temperatures {list(b.rrtf_temperatures)}; "
        f"{b.rrtf_steps} updates per method, one seed; greedy pass@1 with the student's decoder."
    ]
    return {"verdict": verdict(d["mean"], d["ci95"], +1, d["n"]), "measurements": measurements, "notes": notes,
            "figure": "claim-e.png"}  # fmt: skip


EQUAL_QUALITY = 0.05
"""Claim f: "equal quality" when the diffusion model's pass@1 is at most this much below the
AR twin's, at the low end of the paired 95% interval."""
SPEED_ROUNDS = 2
EVAL_BATCH = 32


def batch_times(samples: Path, batch_size: int = EVAL_BATCH) -> list[tuple[int, float]]:
    """(tokens, seconds) per decoding batch of a one-sample evaluation, from its samples file
    (records are written batch by batch; each sample's seconds is its share of the batch)."""
    recs = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    out = []
    for lo in range(0, len(recs), batch_size):
        chunk = recs[lo : lo + batch_size]
        out.append((sum(r["num_tokens"] for r in chunk), sum(r["seconds"] for r in chunk)))
    return out


def speed_ratio(
    fast: Sequence[tuple[int, float]], slow: Sequence[tuple[int, float]], draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """tokens/s of ``fast`` over that of ``slow`` from paired timing units (the same batch of
    tasks, one decoding round), with a percentile bootstrap over the units."""
    if len(fast) != len(slow) or not fast:
        raise ValueError("speed_ratio needs two equally long, non-empty lists of (tokens, seconds)")

    def ratio(idx: Sequence[int]) -> float:
        tf, sf = sum(fast[i][0] for i in idx), sum(fast[i][1] for i in idx)
        ts, ss = sum(slow[i][0] for i in idx), sum(slow[i][1] for i in idx)
        return (tf / sf) / (ts / ss) if sf > 0 and ss > 0 and ts > 0 else math.nan

    return bootstrap(len(fast), ratio, draws, seed)


def speed_verdict(ratio: Mapping[str, float], quality: Mapping[str, float], margin: float = EQUAL_QUALITY) -> str:
    """Faster (the ratio's interval above 1) at equal quality (pass@1 at most ``margin`` lower at the
    interval's low end): reproduced; slower, or faster but significantly worse: not reproduced."""
    if ratio["high"] < 1:
        return "not reproduced"
    if ratio["low"] > 1:
        if quality["mean"] + quality["ci95"] < 0:
            return "not reproduced"
        if quality["mean"] - quality["ci95"] >= -margin and quality.get("n", 2) >= 2:
            return "reproduced"
    return "inconclusive"


def claim_f(ctx: Context) -> dict[str, Any]:
    decoders = {AR: {"gen_length": 48, "cache": "prefix"}, BLOCK: shipped_decoder(BLOCK, "fast")}
    names = {AR: "ar", BLOCK: "block"}
    runs: dict[str, list[dict[str, Any]]] = {AR: [], BLOCK: []}
    units: dict[str, list[tuple[int, float]]] = {AR: [], BLOCK: []}
    for r in range(SPEED_ROUNDS):  # interleaved, so that a change of load hits both models
        for model in (AR, BLOCK):
            name = f"f-{names[model]}-r{r}"
            runs[model].append(ctx.eval(name, model, decoders[model]))
            units[model] += batch_times(ctx.out / "evals" / name / "samples.jsonl")
    ratio = speed_ratio(units[BLOCK], units[AR])
    per_round = [
        speed_ratio(units[BLOCK][i :: SPEED_ROUNDS], units[AR][i :: SPEED_ROUNDS])["ratio"] for i in range(SPEED_ROUNDS)
    ] if len(units[AR]) % SPEED_ROUNDS == 0 else []  # fmt: skip
    q = paired(per_task_pass(runs[AR][0]), per_task_pass(runs[BLOCK][0]))
    tps = {m: [rr["generation"]["tokens_per_second"] for rr in runs[m]] for m in (AR, BLOCK)}
    measurements = [
        {"name": "tokens/s, diffusion (tinycode-block) / autoregressive twin (tinycode-ar)", "mean": ratio["ratio"],
         "low": ratio["low"], "high": ratio["high"], "n": ratio["n"]},
        {"name": "pass@1, diffusion minus autoregressive (paired)", **q},
        {"name": "tokens/s of each round, autoregressive", "mean": ", ".join(f"{v:.0f}" for v in tps[AR])},
        {"name": "tokens/s of each round, diffusion", "mean": ", ".join(f"{v:.0f}" for v in tps[BLOCK])},
    ]  # fmt: skip
    speeds = {"autoregressive": (sum(tps[AR]) / len(tps[AR]), 0.0),
              "diffusion": (sum(tps[BLOCK]) / len(tps[BLOCK]), 0.0)}  # fmt: skip
    quality = {"autoregressive": _pair(mean_interval(per_task_pass(runs[AR][0]).values())),
               "diffusion": _pair(mean_interval(per_task_pass(runs[BLOCK][0]).values()))}  # fmt: skip
    _bar_figure(ctx.figure("f"), [(speeds, f"tokens per second (demask eval, batch {EVAL_BATCH})"),
                                  (quality, "greedy pass@1")], "claim f: tinycode-ar vs tinycode-block")  # fmt: skip
    notes = [
        f"Both evaluated by `demask eval` on the same tasks, batch {EVAL_BATCH}, fp32, {SPEED_ROUNDS} rounds "
        "interleaved (AR, diffusion, AR, diffusion) on this machine (the sandbox runs the previous batch's programs "
        "meanwhile, for both); the AR twin with its KV cache, the block-diffusion model with its chosen fast decoder. "
        "Speed ratio: bootstrap over (round, batch) timing units"
        + (f"; per round {', '.join(f'{x:.3f}' for x in per_round)}" if per_round else "")
        + f". Reproduced when faster and pass@1 at most {EQUAL_QUALITY:.2f} lower at the low end of its interval."
    ]
    return {"verdict": speed_verdict(ratio, q), "measurements": measurements, "notes": notes, "figure": "claim-f.png"}


CLAIMS: dict[str, tuple[str, Callable[[Context], dict[str, Any]]]] = {
    "a": ("coupled-GRPO: complementary masks lower the estimator's variance and train a better model", claim_a),
    "b": ("a higher temperature lowers AR-ness and raises pass@k", claim_b),
    "c": ("the entropy sink: first-step confidence is highest right after the prompt", claim_c),
    "d": ("a learned unmasking policy beats the heuristics at low NFE in full diffusion", claim_d),
    "e": ("RRTF beats SFT on the same teacher responses", claim_e),
    "f": ("diffusion decodes faster than autoregressive at equal quality", claim_f),
}


# ------------------------------------------------------------------------------ figures, report


def _bar_figure(path: Path, panels: Sequence[tuple[Mapping[str, tuple[float, float]], str]], title: str) -> None:
    """One bar panel per (values, y label); a value is (mean, 95% half-width)."""
    from demask.analysis.figures import _plt, save_figure

    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (values, ylabel) in zip(axes[0], panels):
        ax.bar(list(values), [m for m, _ in values.values()], yerr=[h for _, h in values.values()], capsize=3)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def _frontier_figure(path: Path, points: Mapping[str, Mapping[str, Any]]) -> None:
    from demask.analysis.figures import _plt, label_axes, save_figure

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, p in points.items():
        iv = mean_interval(p["pass"].values())
        ax.errorbar([p["nfe"]], [iv.mean], yerr=[iv.half_width], fmt="*" if "learned" in label else "o", ms=9,
                    capsize=3, label=label)  # fmt: skip
    label_axes(ax, "mean NFE per completion (L = 48)", "greedy pass@1 (95% CI)",
               "claim d: full diffusion, learned policy vs heuristics")  # fmt: skip
    save_figure(fig, path)


def _value(m: Mapping[str, Any]) -> str:
    mean = m.get("mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if "low" in m:
        return f"{mean:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
    if "ci95" in m:
        return f"{mean:+.3f} ± {m['ci95']:.3f}" if "minus" in m.get("name", "") else f"{mean:.3f} ± {m['ci95']:.3f}"
    return f"{mean:.3f}" if isinstance(mean, float) else str(mean)


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report: a verdict table, then one section per claim (measurements with 95%
    intervals, the figure, notes and the commands); a claim without a result says why."""
    mode = "quick" if report.get("quick") else "full"
    lines = [
        "# Reproducing the seed papers' claims at TinyCode scale",
        "",
        f"`demask reproduce{' --quick' if report.get('quick') else ''}` ({mode} budget, TinyCode "
        f"{report.get('split', 'test')} split). Intervals are 95% (t over tasks or prompts; bootstrap where a ratio "
        "is shown as [low, high]). A claim is reproduced when the interval of its effect lies on the claimed side.",
        "",
        "| claim | verdict | key measurement |",
        "|---|---|---|",
    ]
    claims = report.get("claims", {})
    for key in CLAIM_KEYS:
        title = CLAIMS[key][0]
        got = claims.get(key)
        if got is None:
            lines.append(f"| ({key}) {title} | not measured in this run | - |")
        elif got.get("status") != "measured":
            lines.append(f"| ({key}) {title} | {got.get('status')}: see below | - |")
        else:
            key_m = _key_measurement(got["measurements"])
            lines.append(f"| ({key}) {title} | **{got['verdict']}** | {key_m['name']}: {_value(key_m)} |")
    for key in CLAIM_KEYS:
        title = CLAIMS[key][0]
        got = claims.get(key)
        lines += ["", f"## ({key}) {title}", ""]
        if got is None:
            lines.append(f"Not measured in this run (`demask reproduce --claims {key}` measures it).")
            continue
        if got.get("status") != "measured":
            lines.append(f"**{got.get('status')}**: {got.get('reason', 'no reason recorded')}")
        else:
            lines.append(f"Verdict: **{got['verdict']}** ({got.get('seconds', '?')} s).")
            lines += ["", "| measurement | value | n |", "|---|---|---|"]
            for m in got["measurements"]:
                lines.append(f"| {m['name']} | {_value(m)} | {m.get('n', '')} |")
            if got.get("figure"):
                lines += ["", f"![claim {key}](figures/{got['figure']})"]
            for note in got.get("notes", []):
                lines += ["", note]
        if got.get("commands"):
            lines += ["", "Commands:", "", "```", *got["commands"], "```"]
    return "\n".join(lines).rstrip() + "\n"


def _key_measurement(measurements: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The measurement a verdict rests on: the first paired difference or ratio."""
    for m in measurements:
        if "minus" in m["name"] or "/" in m["name"]:
            return m
    return measurements[0]
