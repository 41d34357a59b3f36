"""Fill-in-the-middle on TinyCode-infill: oracle length vs the model's own length choice, the
fine-tuned model vs the shipped one, and the AR twin that only sees the prefix.

    python experiments/infill_experiment.py --split validation --model infill=runs/infill-mdm/final \
        --model shipped=tinycode-mdm [--modes line span] [--max-tasks N]
    python experiments/infill_experiment.py --split test --model infill=... --scores mean

Per (model, mode, length rule) a ``demask eval`` folder under ``--out`` (rerunning skips what
is done): greedy, one sample per task; the program is prefix + middle + suffix. Length rules:
``oracle`` (the reference middle's token count), ``mean``/``sum`` (every length of
``--lengths``, 1-20, decoded, the likeliest by mean / total log-probability of the committed
tokens), ``joint`` (the total plus the suffix's log-probability given the middle; chosen on
validation).
The AR twin (``--ar NAME``) decodes from the prefix alone; its middle is its completion up to
the first line break (for ``line``: with the break and the next line's indentation, as the
token-aligned reference middles end; for ``span``: without). Pass@1 with 95% intervals;
paired differences of each rule against ``oracle`` on the same tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def infill_sampler(llm: Any, tasks: list, rule: str, lengths: list[int] | None = None):
    """A Sampler for the evaluation runner: prompt = prefix; completion = middle + suffix.
    Prefix and suffix go in as the token ids a model saw in training (InfillTask.token_inputs)
    and the row is padded to the model's training layout."""
    from demask.evaluation.samples import SampleOutput

    by_prefix = {t.prefix: t for t in tasks}
    if len(by_prefix) != len(tasks):
        raise ValueError("two infilling tasks share a prefix: the sampler could not tell them apart")
    base = llm.completion_length or 48

    def sample(prompts: list[str], seeds: list[int]) -> list[SampleOutput]:
        chosen = [by_prefix[p] for p in prompts]
        inputs = [t.token_inputs(llm.tokenizer) for t in chosen]
        middles: list[str] = [""] * len(chosen)
        groups: dict[int | None, list[int]] = {}  # one call per oracle length (one in all otherwise)
        for i, t in enumerate(chosen):
            groups.setdefault(len(llm.tokenizer.encode(t.middle)) if rule == "oracle" else None, []).append(i)
        for m, rows in groups.items():
            got = llm.infill([inputs[i][0] for i in rows], [inputs[i][1] for i in rows],
                             layout=[base - inputs[i][2] for i in rows], max_new_tokens=m, lengths=lengths,
                             score="mean" if rule == "oracle" else rule)  # fmt: skip
            for i, text in zip(rows, got):
                middles[i] = text
        return [SampleOutput(completion=mid + t.suffix) for mid, t in zip(middles, chosen)]

    return sample


def ar_sampler(llm: Any, tasks: list, mode: str):
    from demask.evaluation.samples import SampleOutput

    by_prefix = {t.prefix: t for t in tasks}

    def sample(prompts: list[str], seeds: list[int]) -> list[SampleOutput]:
        out = []
        for p, text in zip(prompts, llm.generate(list(prompts))):
            suffix = by_prefix[p].suffix
            line, nl, rest = text.partition("\n")
            middle = line
            if mode == "line" and nl:  # the line, its break, and the next line's indentation
                indent = rest[: len(rest) - len(rest.lstrip(" "))]  # that the suffix does not bring
                middle = line + nl + indent[: max(0, len(indent) - (len(suffix) - len(suffix.lstrip(" "))))]
            out.append(SampleOutput(completion=middle + suffix))
        return out

    return sample


def run_point(sampler: Any, tasks: list, out: Path, info: dict) -> dict[str, float]:
    from demask.evaluation.runner import evaluate
    from demask.execution import Sandbox, SandboxConfig

    with Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sandbox:
        evaluate([t.as_task() for t in tasks], sampler, 1, out, sandbox, batch_size=64, run_info=info, progress=False)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]
    return {r["task_id"]: float(bool(r["passed"])) for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    ap.add_argument("--model", action="append", default=[], help="LABEL=NAME_OR_DIR (repeatable)")
    ap.add_argument("--ar", default="tinycode-ar", help="the AR twin ('' to skip)")
    ap.add_argument("--modes", nargs="+", default=["line", "span"])
    ap.add_argument("--scores", nargs="+", default=["oracle", "mean", "sum"])
    ap.add_argument("--max-tasks", type=int, default=None)
    ap.add_argument("--lengths", default="1-20", help="candidate middle lengths of the mean/sum/joint rules (LO-HI)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/infill")
    ap.add_argument("--docs", type=Path, default=None)
    args = ap.parse_args()

    import demask
    from demask.evaluation.stats import mean_interval, paired_difference
    from demask.tasks.infill import tinycode_infill

    report: dict[str, Any] = {"split": args.split, "points": []}
    for mode in args.modes:
        tasks = tinycode_infill(args.split, mode)[: args.max_tasks]
        per: dict[str, dict[str, float]] = {}
        for spec in args.model:
            label, _, path = spec.partition("=")
            llm = demask.load(path, dtype="float32")
            for rule in args.scores:
                key = f"{label}/{rule}"
                lo, _, hi = args.lengths.partition("-")
                candidates = list(range(int(lo), int(hi) + 1))
                per[key] = run_point(infill_sampler(llm, tasks, rule, candidates), tasks,
                                     args.out / args.split / mode / key.replace("/", "-"),
                                     {"model": path, "rule": rule, "mode": mode})  # fmt: skip
        if args.ar:
            llm = demask.load(args.ar, dtype="float32")
            where = args.out / args.split / mode / "ar"
            per["AR twin (prefix only)"] = run_point(ar_sampler(llm, tasks, mode), tasks, where, {"model": args.ar})
        for key, scores in per.items():
            ci = mean_interval(scores.values())
            point = {"mode": mode, "system": key, "n": len(scores), "pass@1": ci.mean, "ci95": ci.half_width}
            oracle = per.get(key.split("/")[0] + "/oracle")
            if oracle is not None and not key.endswith("/oracle"):
                d = paired_difference(oracle, scores)
                point["minus_oracle"] = {"mean": d.diff.mean, "ci95": d.diff.half_width}
            report["points"].append(point)
            extra = point.get("minus_oracle")
            versus = f"   vs oracle {extra['mean']:+.3f} +- {extra['ci95']:.3f}" if extra else ""
            print(f"{args.split} {mode:>4} {key:<28} pass@1 {ci.mean:.3f} +- {ci.half_width:.3f}{versus}", flush=True)
    docs = args.docs or ROOT / f"docs/infill_{args.split}.json"
    docs.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {docs}")


if __name__ == "__main__":
    main()
