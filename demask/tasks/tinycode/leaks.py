"""Leak checks: does a held-out TinyCode task repeat, or merely behave like, a training task?

Three measures, from the strictest to the loosest:

- :func:`text_leaks`: held-out tasks whose solution code or docstring instructions
  (whitespace-normalised) are those of a training task. v2 has none by construction
  (tests/test_tasks_tinycode.py checks it); v1 has some (docs/tinycode.md).
- :func:`alias_leaks`: held-out tasks whose composition, with aliasing constants renamed
  (``keep_div`` with k=2 is ``keep_even``), is the composition of a training task: the same
  function under another name. v2 draws no aliasing constant, so it has none.
- :func:`behavioural_aliases`: held-out tasks whose reference gives the same outputs as some
  training task's reference on every one of a shared set of probe inputs
  (:func:`probe_inputs`): ``abs(n) // 3 > 2`` is ``abs(n) > 8``. Reported, not prevented: a
  model that learnt the training task would pass the held-out one without composing anything.

Outputs are compared with ``==`` (as the tests' asserts do: ``True == 1``). Not covered:
aliases that differ only on inputs outside the probes (the probes are dense around the input
ranges of the config, so such a pair would differ only where no test looks either).
"""

from __future__ import annotations

import ast
import itertools
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from demask.tasks.base import Task
from demask.tasks.tinycode.families import FAMILIES, PRIMITIVES
from demask.tasks.tinycode.generator import (
    Composition,
    TinyCodeConfig,
    _run_all,
    instruction_lines,
    normalise_text,
)


# ------------------------------------------------------------------ texts
def solution_text(task: Task) -> str:
    """The task's canonical solution, whitespace-normalised."""
    return normalise_text(task.canonical_solution)


def instruction_text(task: Task) -> str:
    """The task's docstring instructions (no example), whitespace-normalised."""
    return normalise_text(" ".join(instruction_lines(task)))


@dataclass
class TextLeaks:
    """Held-out task ids whose solution code / instructions are some training task's."""

    code: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Held-out task ids with either leak (each once, in order)."""
        return list(dict.fromkeys(self.code + self.instructions))


def text_leaks(train: Sequence[Task], heldout: Sequence[Task]) -> TextLeaks:
    """The held-out tasks that repeat a training task's solution code or docstring
    instructions (each compared whitespace-normalised, across all families)."""
    codes = {solution_text(t) for t in train}
    instructions = {instruction_text(t) for t in train}
    out = TextLeaks()
    for t in heldout:
        if solution_text(t) in codes:
            out.code.append(t.task_id)
        if instruction_text(t) in instructions:
            out.instructions.append(t.task_id)
    return out


# ------------------------------------------------------------------ aliasing constants
def canonical_composition(task: Task) -> Composition:
    """The task's composition with each step whose constant makes it another primitive
    renamed to that primitive (``("list.keep_div", "list.sum")`` with k=2 is
    ``("list.keep_even", "list.sum")``)."""
    names = []
    for name, consts in zip(task.meta["composition"], task.meta["constants"]):
        names.append(PRIMITIVES[name].alias_of(tuple(consts)) or name)
    return tuple(names)


def alias_leaks(train: Sequence[Task], heldout: Sequence[Task]) -> list[str]:
    """Held-out task ids whose canonical composition is a training task's (either side
    renamed): the same function under another composition name."""
    trained = {canonical_composition(t) for t in train}
    return [t.task_id for t in heldout if canonical_composition(t) in trained]


# ------------------------------------------------------------------ behaviour on probes
def probe_inputs(config: TinyCodeConfig | None = None, n_random: int = 1000, seed: int = 0) -> dict[str, list[Any]]:
    """Per family, a shared set of inputs: the edge inputs; for ints every integer in three
    times the config's range; for lists every list of up to two values a little wider than
    the config's values, and for strings every string of up to three characters of the
    alphabet; then ``n_random`` seeded random longer ones (up to one longer than the config's
    longest). Shuffled (seeded), so any prefix is a varied sample."""
    cfg = config or TinyCodeConfig()
    rng = random.Random(f"TinyCode-probes/{seed}")
    lo, hi = cfg.list_values
    values = range(lo - 7, hi + 9)
    lists: list[Any] = [[v] for v in values] + [[u, v] for u in values for v in values]
    longest = max(3, cfg.list_len[1] + 1)
    lists += [[rng.choice(values) for _ in range(rng.randint(3, longest))] for _ in range(n_random)]
    chars = cfg.alphabet
    strings: list[Any] = ["".join(p) for n in (1, 2, 3) for p in itertools.product(chars, repeat=n)]
    longest = max(4, cfg.str_len[1] + 1)
    strings += ["".join(rng.choices(chars, k=rng.randint(4, longest))) for _ in range(n_random)]
    ints: list[Any] = list(range(3 * cfg.int_values[0], 3 * cfg.int_values[1] + 1))
    out = {"list": lists, "str": strings, "int": ints}
    for name, pool in out.items():
        rng.shuffle(pool)
        edges = list(FAMILIES[name].edge_inputs)
        out[name] = edges + [v for v in pool if v not in edges]
    return out


def test_inputs(task: Task) -> list[Any]:
    """The argument of each of the task's asserts (``assert f([1, 2]) == 3`` gives [1, 2])."""
    out = []
    for test in task.tests:
        node = ast.parse(test).body[0]
        assert isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
        call = node.test.left
        assert isinstance(call, ast.Call)
        out.append(ast.literal_eval(call.args[0]))
    return out


def _freeze(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _outputs(task: Task, inputs: list[Any]) -> tuple[Hashable, ...]:
    meta = task.meta
    steps = [(PRIMITIVES[name], tuple(consts)) for name, consts in zip(meta["composition"], meta["constants"])]
    return tuple(_freeze(v) for v in _run_all(steps, [list(x) if isinstance(x, list) else x for x in inputs]))


@dataclass
class BehaviouralAliases:
    """Held-out tasks that behave like a training task on every probe input."""

    pairs: list[tuple[str, str]]
    """(held-out task id, id of the first training task with the same outputs)."""
    heldout: int
    probes: dict[str, int]
    """Probe inputs per family."""

    @property
    def count(self) -> int:
        return len(self.pairs)

    @property
    def fraction(self) -> float:
        return self.count / max(1, self.heldout)


def behavioural_aliases(
    train: Sequence[Task],
    heldout: Sequence[Task],
    config: TinyCodeConfig | None = None,
    probes: dict[str, list[Any]] | None = None,
) -> BehaviouralAliases:
    """Run every held-out reference and every training reference (each distinct composition
    and constants once) on the same probe inputs of its family (``probes``, default
    :func:`probe_inputs` plus the inputs of every held-out task's asserts, which sit near its
    constants); count the held-out tasks whose outputs equal some training task's on all of
    them. Fast: training functions are first bucketed by their outputs on the first 32
    probes, and only a bucket that a held-out task falls in is run on the rest."""
    if probes is None:
        probes = probe_inputs(config)
        for t in heldout:
            probes[t.meta["family"]] += test_inputs(t)
        probes = {name: list({repr(v): v for v in inputs}.values()) for name, inputs in probes.items()}
    head = {name: inputs[:32] for name, inputs in probes.items()}
    buckets: dict[tuple[str, tuple[Hashable, ...]], list[Task]] = {}
    seen: set[str] = set()
    for t in train:
        key = repr((t.meta["composition"], t.meta["constants"]))
        if key in seen:
            continue
        seen.add(key)
        fam = t.meta["family"]
        buckets.setdefault((fam, _outputs(t, head[fam])), []).append(t)
    full: dict[str, tuple[Hashable, ...]] = {}
    pairs = []
    for t in heldout:
        fam = t.meta["family"]
        mine = _outputs(t, probes[fam])
        for other in buckets.get((fam, mine[: len(head[fam])]), []):
            if other.task_id not in full:
                full[other.task_id] = _outputs(other, probes[fam])
            if full[other.task_id] == mine:
                pairs.append((t.task_id, other.task_id))
                break
    return BehaviouralAliases(pairs, len(heldout), {name: len(inputs) for name, inputs in probes.items()})
