"""Fill-in-the-middle tasks: a prefix, a suffix, the reference middle and the tests.

- :func:`tinycode_infill`: TinyCode tasks with one line (``mode="line"``) or a run of words
  inside one line (``mode="span"``) of the reference solution removed; which one is a pure
  function of the task id and ``seed``. The task's prompt is in the prefix.
- :func:`load_humaneval_infilling`: the HumanEval-infilling files (Bavarian et al. 2022;
  ``HumanEval-SingleLineInfilling.jsonl(.gz)``, ``-MultiLineInfilling``, ``-RandomSpanInfilling``:
  ``task_id, entry_point, prompt`` (the prefix), ``suffix``, ``canonical_solution`` (the
  middle), ``test``) for users who have the data; demask does not ship or download it.

An answer passes when ``prefix + middle + suffix`` passes the task's tests.
:meth:`InfillTask.as_task` is the same task as an evaluation :class:`Task` whose completion
is ``middle + suffix``, so ``demask eval``'s runner scores infilling unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demask.tasks.base import Task

MODES = ("line", "span")


@dataclass(frozen=True)
class InfillTask:
    task_id: str
    prefix: str
    suffix: str
    middle: str
    """The reference middle (its token count is the oracle length)."""
    tests: tuple[str, ...]
    entry_point: str
    setup: str = ""
    prompt_chars: int | None = None
    """How much of ``prefix`` is the task's prompt (a model tokenizes the prompt and the
    solution apart in training; None: all of it)."""

    def program(self, middle: str) -> str:
        return self.prefix + middle + self.suffix

    def token_inputs(self, tokenizer: Any) -> tuple[list[int], list[int], int]:
        """Prefix and suffix as token ids the way a model tokenized them in training (the prompt
        and the solution apart) and the layout: tokens after the prompt's end minus the
        prefix's share, for :meth:`demask.api.LLM.infill`'s ``layout`` (add the completion
        length the model was trained for)."""
        cut = len(self.prefix) if self.prompt_chars is None else self.prompt_chars
        head, before = self.prefix[:cut], self.prefix[cut:]
        before_ids = tokenizer.encode(before) if before else []
        suffix_ids = tokenizer.encode(self.suffix) if self.suffix else []
        return tokenizer.encode(head) + before_ids, suffix_ids, len(before_ids)

    def as_task(self) -> Task:
        """An evaluation task: prompt = prefix, reference completion = middle + suffix."""
        meta = {"suffix": self.suffix, "middle": self.middle}
        completion = self.middle + self.suffix
        return Task(self.task_id, self.prefix, self.tests, self.entry_point, completion, setup=self.setup, meta=meta)


def _pick(key: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") % n


def infill_task(task: Task, mode: str = "line", seed: int = 0, tokenizer: Any = None) -> InfillTask:
    """``task`` with part of its reference solution removed (module docstring).

    With a ``tokenizer`` the cut points move to the nearest token boundaries of the reference
    solution tokenized alone (as a model trains on it): the middle starts at the boundary at
    or before its first character and ends at the one at or after its last, so the middle,
    prefix and suffix, each tokenized alone, are the tokens the model saw in training (a
    line's middle then runs from its first word to the next line's indentation)."""
    if mode not in MODES:
        raise ValueError(f"infill mode {mode!r} is not one of {MODES}")
    if not task.prefix_prompt or not task.canonical_solution.strip():
        raise ValueError(f"task {task.task_id} has no reference completion after its prompt to cut a middle from")
    lines = task.canonical_solution.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    i = candidates[_pick(f"{task.task_id}/{mode}/{seed}/line", len(candidates))]
    before, line, after = "".join(lines[:i]), lines[i], "".join(lines[i + 1 :])
    if mode == "line":
        left, middle, right = "", line, ""
    else:  # a run of whole words of the line, its indentation and line break kept outside
        body = line.rstrip("\n")
        indent = len(body) - len(body.lstrip())
        words = body[indent:].split(" ")
        a = _pick(f"{task.task_id}/{mode}/{seed}/start", len(words))
        b = a + 1 + _pick(f"{task.task_id}/{mode}/{seed}/length", len(words) - a)
        left = body[:indent] + "".join(w + " " for w in words[:a])
        middle = " ".join(words[a:b])
        right = "".join(" " + w for w in words[b:]) + line[len(body) :]
        if not middle.strip():  # only spaces picked (a line with double spaces): the whole line
            left, middle, right = "", line, ""
    if tokenizer is not None:
        solution = task.canonical_solution
        start = len(before) + len(left) + (len(middle) - len(middle.lstrip(" ")))  # the first non-space
        end = len(before) + len(left) + len(middle)
        ids = tokenizer.encode(solution)
        bounds = [len(tokenizer.decode(ids[:k])) for k in range(len(ids) + 1)]
        if bounds[-1] != len(solution):
            raise ValueError(f"task {task.task_id}: the tokenizer does not decode its own tokens to the same text")
        a = max(b for b in bounds if b <= start)
        z = min(b for b in bounds if b >= end)
        before, left, middle, right, after = solution[:a], "", solution[a:z], "", solution[z:]
    return InfillTask(
        f"{task.task_id}/{mode}", task.prompt + before + left, right + after, middle, task.tests,
        task.entry_point, task.setup, prompt_chars=len(task.prompt),
    )  # fmt: skip


def tinycode_infill(
    split: str = "validation", mode: str = "line", seed: int = 0, tokenizer: Any = "tinycode", **options: Any
) -> list[InfillTask]:
    """TinyCode's ``split`` with one middle removed per task (module docstring); cut on the
    token boundaries of ``tokenizer`` ("tinycode": the shipped models' tokenizer; None: on
    characters)."""
    from demask.tasks import load_tasks

    if tokenizer == "tinycode":
        from demask.model.hub import shipped_models
        from demask.model.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_dir(shipped_models()["tinycode-mdm"])
    return [infill_task(t, mode, seed, tokenizer) for t in load_tasks(f"tinycode:{split}", **options)]


def load_humaneval_infilling(path: str | os.PathLike) -> list[InfillTask]:
    """Read a HumanEval-infilling JSONL(.gz) file (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no HumanEval-infilling file at {path}: get HumanEval-SingleLineInfilling.jsonl.gz (or the multi-line "
            "or random-span one) from the openai/human-eval-infilling repository and pass its path"
        )
    opener = gzip.open if path.suffix == ".gz" else open
    tasks = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                entry = row["entry_point"]
                test = row["test"] + f"\ncheck({entry})\n"
                prefix, suffix, middle = row["prompt"], row["suffix"], row["canonical_solution"]
                tasks.append(InfillTask(row["task_id"], prefix, suffix, middle, (test,), entry))
            except (json.JSONDecodeError, KeyError) as exc:
                raise ValueError(
                    f"{path}:{n} is not a HumanEval-infilling record (needs task_id, entry_point, prompt, suffix, "
                    f"canonical_solution, test): {exc}"
                ) from None
    return tasks
