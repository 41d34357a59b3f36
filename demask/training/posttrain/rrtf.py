"""RRTF offline, in three resumable stages with JSONL on disk (``demask rrtf sample|rank|train``).

    out_dir/
      samples/<model>-t<T>/samples.jsonl   sample: n responses per prompt per model and
                                           temperature (demask eval's resumable format, not run)
      ranked.jsonl                         rank: one line per prompt, every response with its
                                           level and score (appended per prompt; resumable)
      pairs.jsonl                          rank: the RRTF pairs with their scores
      train/                               train: checkpoints, train_log.csv, eval/

So a user can sample with a 7B model on a GPU machine, rank on a CPU box with a sandbox, and
train anywhere: each stage reads only the files of the one before.

- **sample**: the student and every teacher (AR or diffusion; a teacher's text is
  re-tokenised with the student's tokenizer at train time), at each temperature, ``n`` per
  prompt; each model decodes with its own ``decoders.json`` "best" decoder (or the
  recipe's ``decode``) at that temperature. Resumable exactly like ``demask eval``.
- **rank**: every response's program compiled and run on the task's tests in the sandbox
  (:func:`~demask.training.posttrain.ranking.rank_response`); prompts already in
  ranked.jsonl are skipped; pairs.jsonl is rewritten from ranked.jsonl at the end.
- **train**: the registered algorithm (``rrtf``, ``rrhf``, ``sft``, ``rejection-sampling``)
  turns each ranked prompt into items, and :func:`train_ranked` trains on them with the
  shared update skeleton (resume, cadence, evaluation, Ctrl-C).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from demask.tasks.base import Task
from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.order import _mix, global_batch_indices
from demask.training.posttrain.algorithm import ALGORITHMS, check_requirements
from demask.training.posttrain.ranking import Encoder, Item, RankingAlgorithm, Response, rank_response, rrtf_pairs
from demask.training.recipe import EvalRecipe
from demask.training.updates import UpdateLoop, reduce_metrics

RANKED_FILE = "ranked.jsonl"
PAIRS_FILE = "pairs.jsonl"
LOG_FILE = "train_log.csv"
STAGES = ("sample", "rank", "train")
_DRAW_STREAM = 0x5C0_4E5D


@dataclass
class ModelSpec:
    """A model that writes responses."""

    name: str
    """Its name in the files (samples/<name>-t<T>/, the ``source`` of its responses)."""
    checkpoint: str
    """A checkpoint directory, a shipped model's name or a hub id."""
    decode: dict[str, Any] = field(default_factory=dict)
    """DecodeConfig fields over the checkpoint's decoders.json "best" decoder (temperature is
    set per sampling run)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"model name {self.name!r} must be non-empty and without '/' (it names a folder)")


@dataclass
class SampleStage:
    tasks: str = "tinycode:fresh"
    """The prompts (a benchmark spec); their tests rank the responses."""
    task_options: dict[str, Any] = field(default_factory=dict)
    max_tasks: int | None = None
    temperatures: list[float] = field(default_factory=lambda: [0.4, 0.8])
    n: int = 4
    """Responses per prompt per model per temperature."""
    batch_size: int = 64
    seed: int = 0
    dtype: str | None = "float32"

    def __post_init__(self) -> None:
        if self.n < 1 or self.batch_size < 1:
            raise ValueError(f"sample.n and sample.batch_size must be >= 1, got {self.n} and {self.batch_size}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"sample.temperatures must be a non-empty list of values >= 0, got {self.temperatures}")


@dataclass
class RankStage:
    timeout_s: float = 3.0
    workers: int | None = None
    """Sandbox workers (None: the CPU count)."""
    prompts_per_chunk: int = 64
    """Prompts ranked (and appended) together."""


@dataclass
class RRTFRecipe:
    """An RRTF run as YAML (``demask rrtf --recipe``)."""

    student: ModelSpec = field(default_factory=lambda: ModelSpec("student", "tinycode-mdm"))
    teachers: list[ModelSpec] = field(default_factory=lambda: [ModelSpec("teacher", "tinycode-ar")])
    sample: SampleStage = field(default_factory=SampleStage)
    rank: RankStage = field(default_factory=RankStage)
    algorithm: str = "rrtf"
    """rrtf | rrhf | sft | rejection-sampling."""
    algorithm_options: dict[str, Any] = field(default_factory=dict)
    """rank_weight (1.0), n_draws (ELBO draws per response of a diffusion student, 2),
    shared_draws (true: antithetic), elbo (t: a mask rate per draw; l: a mask count, LLaDA)."""
    completion_length: int = 48
    """The student's canvas: responses that do not fit with their end token are dropped."""
    out_dir: str = "runs/rrtf"
    """Where the stages write (train checkpoints go to train.out_dir, default out_dir/train)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalRecipe | None = None

    def __post_init__(self) -> None:
        ALGORITHMS.get(self.algorithm)  # "did you mean" for a misspelt name
        names = [self.student.name] + [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must differ (they name the sample folders), got {names}")
        if not self.teachers:
            raise ValueError("RRTF needs at least one teacher (teachers: [{name: ..., checkpoint: ...}])")

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    @property
    def train_dir(self) -> str:
        return self.train.out_dir or str(self.out / "train")

    def models(self) -> list[tuple[str, ModelSpec]]:
        return [("student", self.student)] + [("teacher", t) for t in self.teachers]

    def load_tasks(self) -> list[Task]:
        from demask.tasks import load_tasks

        tasks = load_tasks(self.sample.tasks, **self.sample.task_options)
        return tasks[: self.sample.max_tasks] if self.sample.max_tasks is not None else tasks


def sample_dir(recipe: RRTFRecipe, name: str, temperature: float) -> Path:
    return recipe.out / "samples" / f"{name}-t{temperature:g}"


# ---------------------------------------------------------------------- stage 1: sample
def run_sample(recipe: RRTFRecipe, *, log: Callable[[str], None] = print, progress: bool | None = None) -> None:
    """Draw ``n`` responses per prompt from every model at every temperature (resumable)."""
    from demask.config import to_dict
    from demask.decoding import DecodeConfig
    from demask.demo import model_decoders
    from demask.evaluation.runner import evaluate
    from demask.evaluation.sampler import decoding_sampler
    from demask.model import load_pretrained
    from demask.model.hub import resolve_checkpoint

    tasks = recipe.load_tasks()
    s = recipe.sample
    for role, spec in recipe.models():
        path = resolve_checkpoint(spec.checkpoint)
        model, tokenizer = load_pretrained(path, dtype=s.dtype)
        model.eval()
        best = dict(model_decoders(path, recipe.completion_length)["best"])
        if model.config.causal:  # left to right, one token a step: only the length and the KV cache matter
            best = {
                "gen_length": best.get("gen_length", recipe.completion_length),
                "cache": best.get("cache", "prefix"),
            }
        for temperature in s.temperatures:
            decode = DecodeConfig.from_dict({**best, **spec.decode, "temperature": temperature})
            out = sample_dir(recipe, spec.name, temperature)
            log(f"sample: {spec.name} ({role}) at T={temperature:g}: {len(tasks)} prompts x {s.n} -> {out}")
            with torch.no_grad():
                evaluate(
                    tasks,
                    decoding_sampler(model, tokenizer, decode),
                    s.n,
                    out,
                    None,
                    seed=s.seed,
                    batch_size=s.batch_size,
                    run_info={"checkpoint": spec.checkpoint, "role": role, "decode": to_dict(decode)},
                    progress=progress,
                )


# ---------------------------------------------------------------------- stage 2: rank
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file (a truncated last line from a crash is dropped)."""
    from demask.evaluation.samples import read_samples

    if not path.exists():
        return []
    return [rec for _, rec in read_samples(path).records]


def run_rank(recipe: RRTFRecipe, *, log: Callable[[str], None] = print, sandbox: Any = None) -> Path:
    """Rank every sampled response by executing it; append ranked.jsonl per prompt, then
    rewrite pairs.jsonl. Prompts already ranked are skipped (resume)."""
    from demask.evaluation.runner import progress_bar, run_programs
    from demask.evaluation.samples import open_for_append, read_samples, write_record
    from demask.training.posttrain.ranking import compiles

    tasks = recipe.load_tasks()
    by_task: dict[str, list[dict[str, Any]]] = {t.task_id: [] for t in tasks}
    for role, spec in recipe.models():
        for temperature in recipe.sample.temperatures:
            folder = sample_dir(recipe, spec.name, temperature)
            path = folder / "samples.jsonl"
            if not path.is_file():
                raise ValueError(f"{path} is missing: run the sample stage first (demask rrtf sample)")
            if not (folder / "results.json").is_file():  # evaluate() writes it once every sample is on file
                raise ValueError(
                    f"the sampling of {spec.name} at T={temperature:g} did not finish ({folder}); run demask rrtf "
                    "sample again to complete it before ranking (a prompt ranked without it would stay so)"
                )
            for rec in read_jsonl(path):
                if rec["task_id"] in by_task:
                    by_task[rec["task_id"]].append(
                        {"text": rec["completion"], "source": spec.name, "role": role, "temperature": temperature}
                    )
    ranked_path = recipe.out / RANKED_FILE
    read = read_samples(ranked_path) if ranked_path.exists() else None
    done = {rec["task_id"] for _, rec in read.records} if read is not None else set()
    todo = [t for t in tasks if t.task_id not in done and by_task[t.task_id]]
    own = None
    if sandbox is None and todo:
        from demask.execution import Sandbox, SandboxConfig

        sandbox = own = Sandbox(SandboxConfig.pool(recipe.rank.timeout_s, recipe.rank.workers))
    total = sum(len(v) for v in by_task.values())
    try:
        with (
            open_for_append(ranked_path, read.good_bytes if read is not None else 0) as f,
            progress_bar(total, total - sum(len(by_task[t.task_id]) for t in todo), None, "rank") as bar,
        ):
            chunk = recipe.rank.prompts_per_chunk
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                jobs = [(t, r) for t in part for r in by_task[t.task_id]]
                programs = [t.program(r["text"], recipe.rank.timeout_s) for t, r in jobs]
                runnable = [i for i, p in enumerate(programs) if compiles(p.code)]
                results = dict(zip(runnable, run_programs(sandbox, [programs[i] for i in runnable])))
                for i, (_, response) in enumerate(jobs):
                    level, score = rank_response(programs[i].code, results.get(i))
                    response.update(level=level, score=score)
                for task in part:
                    write_record(
                        f, {"task_id": task.task_id, "prompt": task.prompt, "responses": by_task[task.task_id]}
                    )
                bar.update(len(jobs))
    finally:
        if own is not None:
            own.close()
    pairs = write_pairs(recipe.out)
    log(f"rank: {len(tasks)} prompts ranked in {ranked_path}; {pairs} RRTF pairs in {recipe.out / PAIRS_FILE}")
    return ranked_path


def responses_of(record: dict[str, Any]) -> list[Response]:
    return [
        Response(r["text"], r["source"], r["role"], float(r["score"]), r.get("level", ""), r.get("temperature"))
        for r in record["responses"]
    ]


def write_pairs(out: Path) -> int:
    """pairs.jsonl from ranked.jsonl (atomically); returns the number of pairs."""
    from demask.training.checkpointing import atomic_write_text

    lines = []
    for rec in read_jsonl(out / RANKED_FILE):
        rs = responses_of(rec)
        for i, j in rrtf_pairs(rs):
            lines.append(
                json.dumps(
                    {
                        "task_id": rec["task_id"],
                        "teacher": rs[i].text,
                        "student": rs[j].text,
                        "teacher_source": rs[i].source,
                        "teacher_score": rs[i].score,
                        "student_score": rs[j].score,
                    }
                )
            )
    atomic_write_text(out / PAIRS_FILE, "".join(line + "\n" for line in lines))
    return len(lines)


# ---------------------------------------------------------------------- stage 3: train
def build_items(algorithm: RankingAlgorithm, ranked: Sequence[dict[str, Any]]) -> list[Item]:
    """Every ranked prompt's items for ``algorithm``, in file order."""
    items: list[Item] = []
    for rec in ranked:
        items += algorithm.items(rec["task_id"], rec["prompt"], responses_of(rec))
    return items


def train_ranked(
    algorithm: RankingAlgorithm,
    train: TrainConfig,
    model: nn.Module,
    items: Sequence[Item],
    encoder: Encoder,
    *,
    tokenizer: Any = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    extra_files: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> UpdateLoop:
    """Train ``model`` on ``items`` with ``algorithm``'s loss, ``train.global_batch_size``
    items an update (rows and diffusion draws are functions of (seed, step, process,
    micro-batch): resume is exact, and refused when anything that decides them changed).
    Returns the finished loop (done, last_checkpoint, last_row, eval_metrics)."""
    check_requirements(algorithm, {"ranked"})
    if not items:
        raise ValueError(f"no training items for {type(algorithm).__name__}: the ranking produced none")

    micro_size, _ = train.micro_batches(1)

    def signature(world_size: int) -> dict[str, Any]:
        """What decides the loss and the draws of every step: all must match to resume."""
        return {
            "algorithm": type(algorithm).__name__,
            "rank_weight": algorithm.rank_weight,
            "n_draws": algorithm.n_draws,
            "shared_draws": algorithm.shared_draws,
            "elbo": algorithm.elbo,
            "completion_length": encoder.length,
            "n_items": len(items),
            "micro_batch_size": micro_size,
            "world_size": world_size,
        }

    def check_resume(saved: dict[str, Any]) -> None:
        from demask.training.checkpointing import require_unchanged

        require_unchanged(saved["config"], train, ("seed", "global_batch_size"), prefix="train.")
        before, now = saved.get("ranked", {}), signature(saved.get("world_size", 1))
        for key, value in now.items():
            if before.get(key) != value:
                raise ValueError(
                    f"cannot resume: the checkpoint was trained with {key}={before.get(key)!r}, this run has "
                    f"{value!r}; the loss or the data order would differ (use another output folder)"
                )

    loop = UpdateLoop(
        train,
        model,
        log_name=LOG_FILE,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files=extra_files,
        check_resume=check_resume,
        desc=type(algorithm).__name__.lower(),
    )
    info = loop.info
    micro, accum = train.micro_batches(info.world_size)
    first = info.rank * micro * accum
    sums: dict[str, float] = {}
    with loop:
        for step in range(loop.start, train.max_steps):
            rows = global_batch_indices(len(items), train.global_batch_size, train.seed, step)

            def accumulate(rows: torch.Tensor = rows, step: int = step) -> None:
                for m in range(accum):
                    chosen = [items[int(i)] for i in rows[first + m * micro : first + (m + 1) * micro]]
                    batch = encoder.batch(chosen, algorithm.ranks).to(info.device)
                    # the diffusion draws of (step, process, micro-batch): a function of them, never shared
                    gen = torch.Generator().manual_seed(_mix(_mix(_mix(train.seed ^ _DRAW_STREAM, step), info.rank), m))
                    with loop.strategy.sync_gradients(loop.wrapped, m == accum - 1):
                        with loop.amp:
                            loss, stats = algorithm.loss(loop.wrapped, batch, generator=gen)
                        (loss / accum).backward()
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + value / accum

            grad_norm = float(loop.update(accumulate))

            def metrics(grad_norm: float = grad_norm) -> dict[str, float]:
                n = max(loop.window_updates, 1)
                means = reduce_metrics({k: v / n for k, v in sums.items()}, info)
                sums.clear()
                loop.bar.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
                return {**means, "lr": loop.lr, "grad_norm": grad_norm, "elapsed_s": loop.elapsed()}

            state = {"data": {"n_items": len(items)}, "ranked": signature(info.world_size)}
            loop.end_unit(step, metrics, functools.partial(dict, state), log_line=log)
            if loop.stopping:
                break
    return loop


def run_train(recipe: RRTFRecipe, *, resume: bool = False, log: Callable[[str], None] = print) -> UpdateLoop:
    """Load the student, build the algorithm's items from ranked.jsonl and train on them."""
    from demask.model import load_pretrained

    ranked = read_jsonl(recipe.out / RANKED_FILE)
    if not ranked:
        raise ValueError(f"{recipe.out / RANKED_FILE} is empty or missing: run the rank stage first (demask rrtf rank)")
    algorithm = ALGORITHMS.create(recipe.algorithm, **recipe.algorithm_options)
    if not isinstance(algorithm, RankingAlgorithm):
        raise ValueError(
            f"algorithm {recipe.algorithm!r} does not train on ranked responses; "
            "use rrtf, rrhf, sft or rejection-sampling"
        )
    model, tokenizer = load_pretrained(recipe.student.checkpoint, dtype=recipe.sample.dtype)
    encoder = Encoder.for_model(tokenizer, model.config, recipe.completion_length)
    every = build_items(algorithm, ranked)
    items = [it for it in every if encoder.fits(it)]
    log(
        f"train: {recipe.algorithm} on {len(items)} items from {len(ranked)} prompts "
        f"({len(every) - len(items)} dropped: longer than the {recipe.completion_length}-token canvas); "
        f"student {recipe.student.checkpoint}"
    )
    train = recipe.train.override(out_dir=recipe.train_dir)
    callbacks: list[Callback] = []
    if recipe.eval is not None and recipe.eval.enabled:
        from demask.tasks import load_tasks

        callbacks = recipe.eval.callbacks(
            load_tasks(recipe.eval.tasks or "tinycode:validation"), tokenizer, recipe.completion_length, train.out_dir
        )
    return train_ranked(
        algorithm,
        train,
        model,
        items,
        encoder,
        tokenizer=tokenizer,
        callbacks=callbacks,
        resume=resume,
        extra_files={"rrtf_recipe.yaml": dump_rrtf_recipe(recipe)},
        log=log,
    )


# ---------------------------------------------------------------------- recipes
def load_rrtf_recipe(path: str | Path, settings: Sequence[str] = ()) -> RRTFRecipe:
    """Read an RRTF recipe and apply ``KEY=VALUE`` settings (unknown keys named)."""
    from demask.training.recipe import read_recipe

    return read_recipe(
        RRTFRecipe,
        path,
        settings,
        blocks="student, teachers, sample, rank, algorithm, train, eval",
        example="algorithm=rrhf or train.lr=1e-5",
    )


def dump_rrtf_recipe(recipe: RRTFRecipe) -> str:
    """The recipe as YAML (every field); load(dump(r)) == r."""
    from demask.training.recipe import dump_recipe

    return dump_recipe(recipe)
