"""TinyCode: a seeded benchmark of short Python functions built by composing primitives.

A *composition* is the ordered tuple of primitive names of a task, constants abstracted
(``("list.keep_gt", "list.mul", "list.sum")``); its depth is its length (1 to 3 by default:
the difficulty tier). Each task instance draws constants, a function name and a wording
per step, and renders:

    def process_numbers(xs):
        \"\"\"Keep the numbers greater than 3.
        Multiply each number by 2.
        Return their sum.
        >>> process_numbers([1, 4, 5])
        18
        \"\"\"
        xs = [x for x in xs if x > 3]        <- canonical_solution: one line per primitive
        xs = [x * 2 for x in xs]
        return sum(xs)

The held-out split is made of whole compositions never seen in training, each built from
primitives that training uses in at least ``min_train_uses`` other compositions: it measures
compositional generalisation, not memorisation.

Tests are chosen by mutation testing: from a pool of seeded inputs (with the task's
constants and their neighbours mixed in), an edge input and then greedily the inputs that
tell the reference apart from its mutants (every constant +-1 or another char, every step
dropped; also swapped steps and other primitives). An instance whose tests cannot catch every
constant and dropped-step mutant, or whose tests all expect the same value, is redrawn, and
a composition that never yields such an instance is not used. Expected values come from the
primitives' Python functions, independently of the rendered code (the test suite checks that
the code agrees).

Not covered: tasks whose argument changes type midway, more than one argument, tasks that
need a loop with state; wordings are two per primitive, not free text.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from demask.tasks.base import Task
from demask.tasks.tinycode.families import FAMILIES, PRIMITIVES, Family, InputSpace
from demask.tasks.tinycode.primitives import ConstRanges, Primitive

TINYCODE_VERSION = "v1"
SUPPORTED_VERSIONS = ("v1",)
BENCHMARK_NAME = "TinyCode"

Composition = tuple[str, ...]

_VERBS = ("process", "transform", "compute", "solve", "convert", "handle", "apply", "calc")


def _check_range(name: str, value: tuple[int, int], lowest: int | None = None) -> None:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name}={value!r} must be (low, high) with low <= high")
    if lowest is not None and value[0] < lowest:
        raise ValueError(f"{name}={value!r}: low must be >= {lowest}; raise it")


@dataclass(frozen=True)
class TinyCodeConfig:
    """Everything that decides the benchmark. Same config -> identical tasks."""

    seed: int = 0
    """Seed of every random choice (compositions, split, constants, inputs, wording)."""
    version: str = TINYCODE_VERSION
    """Generator version; carried in task ids and meta so results name what they measured."""
    n_train: int = 12000
    """Number of training task instances, spread evenly over the training compositions."""
    test_per_composition: int = 4
    """Held-out instances per held-out composition."""
    heldout_fraction: float = 0.2
    """Fraction of each (family, depth) tier's compositions held out for the test split."""
    tests_per_task: int = 4
    """Asserts per task (one of them on an edge input such as the empty list)."""
    max_depth: int = 3
    """Longest composition (number of primitives, the last one returns)."""
    compositions_per_depth: tuple[int, ...] = (8, 40, 90)
    """Per family, how many compositions of depth 1, 2, ... to use (capped by what exists)."""
    families: tuple[str, ...] = ("list", "str", "int")
    min_train_uses: int = 3
    """A primitive of a held-out composition appears in at least this many train ones."""
    list_len: tuple[int, int] = (0, 6)
    list_values: tuple[int, int] = (-5, 12)
    int_values: tuple[int, int] = (-20, 60)
    str_len: tuple[int, int] = (0, 7)
    alphabet: str = "abcdeABCDE0123"
    """Characters of test strings."""
    factor_range: tuple[int, int] = (2, 5)
    addend_range: tuple[int, int] = (1, 9)
    threshold_range: tuple[int, int] = (0, 9)
    count_range: tuple[int, int] = (1, 3)
    const_chars: str = "abcdeAB1"
    """Characters a string task may name (replace 'a' with 'b' ...); a subset of alphabet."""
    candidate_inputs: int = 24
    """Size of the seeded input pool that the tests are picked from, per instance."""
    max_tries: int = 12
    """Constant draws per instance before the instance (or composition) is given up."""
    max_example_chars: int = 40
    """Longest docstring example (input and output reprs together) when a shorter exists."""

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(
                f"version={self.version!r} is not one this code generates "
                f"({SUPPORTED_VERSIONS}); use {TINYCODE_VERSION!r}"
            )
        if self.n_train < 0 or self.test_per_composition < 1:
            raise ValueError(
                f"n_train={self.n_train} must be >= 0 and test_per_composition={self.test_per_composition} >= 1"
            )
        if not 0.0 < self.heldout_fraction <= 0.5:
            raise ValueError(f"heldout_fraction={self.heldout_fraction} must be in (0, 0.5]")
        if not 2 <= self.tests_per_task <= 10:
            raise ValueError(
                f"tests_per_task={self.tests_per_task} must be in [2, 10] (one edge input plus at least one more)"
            )
        if not 1 <= self.max_depth <= 4:
            raise ValueError(f"max_depth={self.max_depth} must be in [1, 4]")
        if len(self.compositions_per_depth) != self.max_depth or min(self.compositions_per_depth) < 0:
            raise ValueError(
                f"compositions_per_depth={self.compositions_per_depth} needs one "
                f"non-negative count per depth 1..max_depth={self.max_depth}"
            )
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"families={self.families}: unknown {unknown}; choose among {sorted(FAMILIES)}")
        if self.min_train_uses < 1:
            raise ValueError(f"min_train_uses={self.min_train_uses} must be >= 1")
        _check_range("list_len", self.list_len, lowest=0)
        _check_range("list_values", self.list_values)
        _check_range("int_values", self.int_values)
        _check_range("str_len", self.str_len, lowest=0)
        _check_range("factor_range", self.factor_range, lowest=2)
        _check_range("addend_range", self.addend_range, lowest=1)
        _check_range("threshold_range", self.threshold_range)
        _check_range("count_range", self.count_range, lowest=1)
        if min(self.list_len[1], self.str_len[1]) < 1:
            raise ValueError(
                f"list_len={self.list_len}, str_len={self.str_len}: the high end "
                "must be >= 1 so that inputs other than the empty one exist"
            )
        if (
            not self.alphabet
            or not set(self.const_chars) <= set(self.alphabet)
            or len(set(self.const_chars)) < 2
            or "'" in self.alphabet
            or "\\" in self.alphabet
        ):
            raise ValueError(
                f"const_chars={self.const_chars!r} must hold >= 2 distinct chars, "
                f"all in alphabet={self.alphabet!r} (no quote or backslash)"
            )
        if self.candidate_inputs < self.tests_per_task or self.max_tries < 1:
            raise ValueError(
                f"candidate_inputs={self.candidate_inputs} must be >= "
                f"tests_per_task={self.tests_per_task}; max_tries >= 1"
            )

    @property
    def ranges(self) -> ConstRanges:
        return ConstRanges(
            self.factor_range, self.addend_range, self.threshold_range, self.count_range, self.const_chars
        )

    @property
    def space(self) -> InputSpace:
        return InputSpace(self.list_len, self.list_values, self.int_values, self.str_len, self.alphabet)


@dataclass
class TinyCodeSplits:
    """The benchmark: training tasks and held-out tasks, and the compositions of each."""

    config: TinyCodeConfig
    train: list[Task]
    test: list[Task]
    compositions_train: list[Composition]
    compositions_test: list[Composition]
    dropped: list[Composition] = field(default_factory=list)
    """Compositions drawn but never used: no instance had tests that catch all mutants."""

    @property
    def compositions(self) -> list[Composition]:
        return sorted(self.compositions_train + self.compositions_test)

    def summary(self) -> dict[str, Any]:
        """Counts for reports: compositions and tasks per split, test tasks per depth."""
        depths: dict[int, int] = {}
        for t in self.test:
            depths[t.meta["depth"]] = depths.get(t.meta["depth"], 0) + 1
        chars = [len(t.canonical_solution) for t in self.train + self.test]
        return {
            "benchmark": BENCHMARK_NAME,
            "version": self.config.version,
            "seed": self.config.seed,
            "compositions_train": len(self.compositions_train),
            "compositions_test": len(self.compositions_test),
            "train": len(self.train),
            "test": len(self.test),
            "test_by_depth": dict(sorted(depths.items())),
            "mean_completion_chars": sum(chars) / max(1, len(chars)),
        }


def composition_family(comp: Composition) -> Family:
    return FAMILIES[comp[0].split(".", 1)[0]]


# ------------------------------------------------------------------ one instance
@dataclass
class _Instance:
    steps: list[tuple[Primitive, tuple]]
    tests: list[tuple[Any, Any]]  # (input, expected)
    example: tuple[Any, Any]


def _run_all(steps: list[tuple[Primitive, tuple]], values: list) -> list:
    """Each value through ``steps`` (the hot loop of generation: no per-call overhead)."""
    for prim, consts in steps:
        fn = prim.fn
        values = [fn(v, *consts) for v in values]
    return values


def _mutants(
    steps: list[tuple[Primitive, tuple]], fam: Family, ranges: ConstRanges, rng: random.Random
) -> list[tuple[bool, int, list]]:
    """(required, start, tail): the mutant runs ``tail`` from the reference's state after
    ``start`` steps. Required mutants (a constant off by one, a step left out) must be caught."""
    out: list[tuple[bool, int, list]] = []
    last = len(steps) - 1
    for i, (prim, consts) in enumerate(steps):
        for j, (_, kind) in enumerate(prim.slots):
            for v in ranges.neighbours(kind, consts[j]):
                new = (*consts[:j], v, *consts[j + 1 :])
                if prim.valid(new):
                    out.append((True, i, [(prim, new), *steps[i + 1 :]]))
        if i < last:
            out.append((True, i, steps[i + 1 :]))  # step i left out
            if i + 1 < last and steps[i + 1][0] is not prim:
                out.append((False, i, [steps[i + 1], steps[i], *steps[i + 2 :]]))
        pool = fam.terminals if i == last else fam.transforms
        for other in rng.sample(pool, 2):
            if other is not prim:
                out.append((False, i, [(other, other.draw_consts(ranges, rng)), *steps[i + 1 :]]))
    return out


def _pick_tests(
    ref: list, kills: list[set[int]], required: set[int], n_edge: int, n_tests: int, sizes: list[int]
) -> list[int] | None:
    """Greedy choice of ``n_tests`` pool indices: one edge input first, then inputs that
    catch the most uncaught required mutants, then other mutants, then a new output value,
    then the shortest. None if a required mutant stays uncaught or all outputs are equal."""
    chosen: list[int] = []
    caught: set[int] = set()
    for slot in range(n_tests):
        options = range(n_edge) if slot == 0 else [i for i in range(len(ref)) if i not in chosen]
        seen = [ref[c] for c in chosen]

        def score(i: int, caught: set[int] = caught, seen: list = seen) -> tuple:
            new = kills[i] - caught
            return (len(new & required), len(new), ref[i] not in seen, -sizes[i], -i)

        best = max(options, key=score)
        chosen.append(best)
        caught |= kills[best]
    outputs = [ref[i] for i in chosen]
    if not required <= caught or all(o == outputs[0] for o in outputs):
        return None
    return chosen


def _kill_sets(
    mutants: list[tuple[bool, int, list]], required: set[int], states: list[list], ref: list
) -> list[set[int]] | None:
    """kills[k]: the mutants that input k catches. None as soon as a required mutant is caught
    by no input: these constants make a step or a constant moot (sort then sum; keep x > 3
    then keep the even ones, where 3 and 2 agree), so the instance is redrawn."""
    kills: list[set[int]] = [set() for _ in ref]
    for m in sorted(range(len(mutants)), key=lambda m: m not in required):
        _, start, tail = mutants[m]
        caught = False
        for k, (got, want) in enumerate(zip(_run_all(tail, states[start]), ref)):
            if got != want:
                kills[k].add(m)
                caught = True
        if not caught and m in required:
            return None
    return kills


def _make_instance(comp: Composition, cfg: TinyCodeConfig, rng: random.Random) -> _Instance | None:
    fam = composition_family(comp)
    prims = [PRIMITIVES[name] for name in comp]
    ranges, space = cfg.ranges, cfg.space
    for _ in range(cfg.max_tries):
        steps = [(p, p.draw_consts(ranges, rng)) for p in prims]
        flat = tuple(v for _, consts in steps for v in consts)
        pool, keys = [], set()
        for value in (*fam.edge_inputs, *(fam.draw_input(rng, space, flat) for _ in range(cfg.candidate_inputs))):
            if repr(value) not in keys:
                keys.add(repr(value))
                pool.append(value)
        states = [pool]  # states[i][k]: input k after the first i steps of the reference
        for step in steps:
            states.append(_run_all([step], states[-1]))
        ref = states[-1]
        mutants = _mutants(steps, fam, ranges, rng)
        required = {m for m, (req, _, _) in enumerate(mutants) if req}
        kills = _kill_sets(mutants, required, states, ref)
        if kills is None:
            continue
        sizes = [len(repr(v)) + len(repr(o)) for v, o in zip(pool, ref)]
        chosen = _pick_tests(ref, kills, required, len(fam.edge_inputs), min(cfg.tests_per_task, len(pool)), sizes)
        if chosen is None:
            continue
        # The example: a caught-the-most input among the short ones (not an edge input).
        body = range(len(fam.edge_inputs), len(pool))
        short = [k for k in body if sizes[k] <= cfg.max_example_chars] or list(body)
        ex = max(short, key=lambda k: (len(kills[k]), -sizes[k], -k))
        return _Instance(steps, [(pool[k], ref[k]) for k in chosen], (pool[ex], ref[ex]))
    return None


# ------------------------------------------------------------------ rendering
def _function_name(comp: Composition, fam: Family, rng: random.Random) -> str:
    if rng.random() < 0.5:
        name = f"{rng.choice(_VERBS)}_{rng.choice(fam.nouns)}"
    else:
        name = "f_" + "_".join(PRIMITIVES[p].slug for p in comp)
    return name


def _render(
    inst: _Instance, comp: Composition, split: str, index: int, cfg: TinyCodeConfig, rng: random.Random
) -> Task:
    fam = composition_family(comp)
    name = _function_name(comp, fam, rng)
    lines = [prim.render_phrase(consts, rng.randrange(len(prim.phrases))) for prim, consts in inst.steps]
    ex_in, ex_out = inst.example
    doc = "\n    ".join([*lines, f">>> {name}({ex_in!r})", repr(ex_out)])
    prompt = f'def {name}({fam.arg}):\n    """{doc}\n    """\n'
    body = "".join(f"    {prim.render_code(consts)}\n" for prim, consts in inst.steps)
    tests = tuple(f"assert {name}({x!r}) == {y!r}" for x, y in inst.tests)
    return Task(
        task_id=f"{BENCHMARK_NAME}/{cfg.version}/{split}/{index}",
        prompt=prompt,
        tests=tests,
        entry_point=name,
        canonical_solution=body,
        prefix_prompt=True,
        meta={
            "benchmark": BENCHMARK_NAME,
            "version": cfg.version,
            "seed": cfg.seed,
            "split": split,
            "family": fam.name,
            "depth": len(comp),
            "composition": list(comp),
            "constants": [list(consts) for _, consts in inst.steps],
        },
    )


# ------------------------------------------------------------------ compositions and split
def _all_compositions(fam: Family, depth: int) -> list[Composition]:
    terminals = [p.name for p in fam.terminals]
    if depth == 1:
        return [(t,) for t in terminals if t != fam.identity]
    transforms = [p.name for p in fam.transforms]
    return [
        (*head, t)
        for head in itertools.product(transforms, repeat=depth - 1)
        if all(a != b for a, b in itertools.pairwise(head))
        for t in terminals
    ]


def _rng(cfg: TinyCodeConfig, *parts: object) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: stable across runs and platforms.
    return random.Random("/".join(map(str, (BENCHMARK_NAME, cfg.version, cfg.seed, *parts))))


def select_compositions(cfg: TinyCodeConfig) -> tuple[list[Composition], list[Composition]]:
    """(used, dropped): per family and depth, up to ``compositions_per_depth`` compositions
    drawn at random among those for which an instance with discriminating tests exists."""
    used, dropped = [], []
    for fam_name in cfg.families:
        fam = FAMILIES[fam_name]
        for depth, cap in zip(range(1, cfg.max_depth + 1), cfg.compositions_per_depth):
            candidates = _all_compositions(fam, depth)
            _rng(cfg, "compositions", fam_name, depth).shuffle(candidates)
            taken = 0
            for comp in candidates:
                if taken == cap:
                    break
                if _make_instance(comp, cfg, _rng(cfg, "viable", *comp)) is None:
                    dropped.append(comp)
                else:
                    used.append(comp)
                    taken += 1
    return used, dropped


def split_compositions(comps: list[Composition], cfg: TinyCodeConfig) -> tuple[list[Composition], list[Composition]]:
    """Hold out ``heldout_fraction`` of each (family, depth) tier, keeping every primitive of
    a held-out composition in at least ``min_train_uses`` training compositions."""
    uses: dict[str, int] = {}
    for comp in comps:
        for p in set(comp):
            uses[p] = uses.get(p, 0) + 1
    test: set[Composition] = set()
    tiers = sorted({(c[0].split(".")[0], len(c)) for c in comps}, key=lambda t: (t[0], -t[1]))
    for fam_name, depth in tiers:
        tier = sorted(c for c in comps if c[0].startswith(fam_name + ".") and len(c) == depth)
        _rng(cfg, "split", fam_name, depth).shuffle(tier)
        want = round(cfg.heldout_fraction * len(tier))
        for comp in tier:
            if want == 0:
                break
            if all(uses[p] - 1 >= cfg.min_train_uses for p in set(comp)):
                test.add(comp)
                want -= 1
                for p in set(comp):
                    uses[p] -= 1
    train = sorted(c for c in comps if c not in test)
    return train, sorted(test)


def _instances(
    comp: Composition, count: int, split: str, cfg: TinyCodeConfig, seen: set[str]
) -> list[tuple[_Instance, Composition, random.Random]]:
    out: list[tuple[_Instance, Composition, random.Random]] = []
    for i in itertools.count():
        if len(out) == count or i >= 3 * count + 10:
            break
        rng = _rng(cfg, split, *comp, i)
        inst = _make_instance(comp, cfg, rng)
        if inst is None:
            continue
        key = repr((inst.steps, inst.example, [t[0] for t in inst.tests]))
        if key not in seen:  # the same constants and inputs again: draw another
            seen.add(key)
            out.append((inst, comp, rng))
    return out


def build_tinycode(config: TinyCodeConfig | None = None) -> TinyCodeSplits:
    """Generate the benchmark. Deterministic: the same config gives identical tasks, and the
    test split does not depend on ``n_train``. Pure Python: the default config takes about
    9 s of one CPU core (mostly mutation testing of the candidate inputs); cache the result
    (``cached_build``) rather than rebuilding it per epoch."""
    cfg = config or TinyCodeConfig()
    used, dropped = select_compositions(cfg)
    comps_train, comps_test = split_compositions(used, cfg)

    test_raw = []
    for comp in comps_test:
        test_raw += _instances(comp, cfg.test_per_composition, "test", cfg, set())
    test = [_render(inst, comp, "test", i, cfg, rng) for i, (inst, comp, rng) in enumerate(test_raw)]

    train_raw = []
    if comps_train:
        order = list(comps_train)
        _rng(cfg, "allocation").shuffle(order)
        base, extra = divmod(cfg.n_train, len(order))
        for r, comp in enumerate(order):
            train_raw += _instances(comp, base + (r < extra), "train", cfg, set())
        _rng(cfg, "order").shuffle(train_raw)
    train = [_render(inst, comp, "train", i, cfg, rng) for i, (inst, comp, rng) in enumerate(train_raw)]
    return TinyCodeSplits(cfg, train, test, comps_train, comps_test, dropped)


def build_fresh(config: TinyCodeConfig | None = None, n_tasks: int = 2000) -> list[Task]:
    """``n_tasks`` tasks of *fresh* compositions: ones the benchmark did not select, so
    neither a training nor a held-out composition (split name ``fresh``, one instance per
    composition). For post-training on prompts the SFT model has not seen the like of
    (reinforcement learning from test results wants prompts it sometimes fails) while the
    held-out split stays unseen. Tasks are spread over the (family, depth) tiers in
    proportion to ``compositions_per_depth`` (what a small tier cannot give goes to the
    next); tiers whose every composition the benchmark already uses (depth 1) give none.
    Fewer than ``n_tasks`` only if the fresh compositions run out. Deterministic in the
    config and ``n_tasks``."""
    cfg = config or TinyCodeConfig()
    if n_tasks < 1:
        raise ValueError(f"n_tasks={n_tasks} must be >= 1")
    used, dropped = select_compositions(cfg)
    taken = set(used) | set(dropped)
    pools: list[list[Composition]] = []
    weights: list[int] = []
    for fam_name in cfg.families:
        for depth, cap in zip(range(1, cfg.max_depth + 1), cfg.compositions_per_depth):
            pool = [c for c in _all_compositions(FAMILIES[fam_name], depth) if c not in taken]
            if pool and cap:
                _rng(cfg, "fresh", fam_name, depth).shuffle(pool)
                pools.append(pool)
                weights.append(cap)
    if not pools:
        raise ValueError(
            f"the benchmark (compositions_per_depth={cfg.compositions_per_depth})"
            " uses every composition there is: no fresh ones are left"
        )
    quotas = [n_tasks * w // sum(weights) for w in weights]
    for i in range(n_tasks - sum(quotas)):
        quotas[i % len(quotas)] += 1
    raw = []
    rest = [iter(pool) for pool in pools]
    for _ in range(2):  # the second pass spends what small tiers could not give on the others
        for tier, quota in enumerate(quotas):
            for comp in rest[tier]:
                if quota == 0:
                    break
                made = _instances(comp, 1, "fresh", cfg, set())
                raw += made
                quota -= len(made)
            quotas[tier] = 0
            if tier + 1 < len(quotas):
                quotas[tier + 1] += quota
        quotas[0] = n_tasks - len(raw)
    _rng(cfg, "fresh-order").shuffle(raw)
    return [_render(inst, comp, "fresh", i, cfg, rng) for i, (inst, comp, rng) in enumerate(raw)]
