"""Rewards for RL on code: format, test pass rate, and their weighted sum (coupled-GRPO).

DiffuCoder (arXiv 2506.20639) rewards a completion with ``r = 2.0 * code + 0.5 * format``:

- format (chat answers): 1.0 if the answer holds exactly one fenced python block and the
  block parses (``ast.parse``), 0.5 if it holds one such block that does not parse, 0.0
  otherwise (:func:`format_reward_chat`). For body completions (TinyCode, HumanEval-style
  prefix prompts) there is no fence: 1.0 if ``prompt + completion`` parses, else 0.0
  (:func:`format_reward_body`; our adaptation).
- code: the fraction of the task's tests that pass (:func:`code_reward`), computed only when
  format == 1 (as in the paper: a completion that does not parse is not run).

Where we depart from the reference code: a test that times out counts as one failed test and
the tests that passed before it still count; the reference loses the whole code reward there.

The batch entry point is :func:`compute_rewards` (completions + tasks -> one sandbox
``run_many`` call -> :class:`RewardBreakdown` per completion). :class:`RewardFn` is the
interface the RL loop holds; implementations register by name (:func:`get_reward`).

Not covered: NFE-aware rewards for unmasking-policy RL (a later RewardFn), languages other
than Python, partial credit for a fenced block followed by stray text that itself holds
fences (that is 0.0: "exactly one block").
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
import random
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from demask.execution.types import ExecutionResult, Program, Verdict
from demask.registry import Registry
from demask.tasks.base import Task

FENCE = "```"
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n", re.IGNORECASE)


# ---------------------------------------------------------------------- pure rewards
def extract_code_block(text: str) -> str | None:
    """The code of the single fenced python block in ``text``, or None.

    "Exactly one block" means the text holds exactly two fence markers (```), the first of
    them opens a python block (```python / ```py, then a newline) and the second closes it.
    Text before and after the block is allowed (an explanation); a second block, an
    unterminated block or a block in another language gives None.

    >>> extract_code_block("Here:\\n```python\\nx = 1\\n```\\nDone.")
    'x = 1\\n'
    >>> extract_code_block("```python\\nx = 1\\n```\\n```python\\ny = 2\\n```") is None
    True
    >>> extract_code_block("```python\\nx = 1\\n") is None  # never closed
    True
    """
    if text.count(FENCE) != 2:
        return None
    start = text.index(FENCE)
    opening = _OPEN_FENCE.match(text, start)
    if opening is None:
        return None
    end = text.index(FENCE, start + len(FENCE))
    return text[opening.end() : end]


def _parses(code: str) -> bool:
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" and friends are not errors
            warnings.simplefilter("ignore")
            ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        # ValueError: source with NUL bytes; MemoryError/RecursionError: absurdly nested code
        return False
    return True


def format_reward_chat(text: str) -> float:
    """DiffuCoder's format reward for a chat answer.

    1.0: exactly one fenced python block and it parses; 0.5: exactly one fenced python block
    with a syntax error; 0.0: no block, several blocks, an unterminated block, or a block in
    another language. ``text`` must include any prefilled part of the answer (DiffuCoder
    prefills "...```python\\n": pass ``prefix + completion``).

    >>> format_reward_chat("```python\\ndef f(x):\\n    return x + 1\\n```")
    1.0
    >>> format_reward_chat("```python\\ndef f(x:\\n```")
    0.5
    >>> format_reward_chat("def f(x):\\n    return x")
    0.0
    """
    code = extract_code_block(text)
    if code is None:
        return 0.0
    return 1.0 if _parses(code) else 0.5


def format_reward_body(completion: str, prompt: str) -> float:
    """Format reward for a body completion (TinyCode, HumanEval-style prefix prompts).

    1.0 if ``prompt + completion`` parses as Python, else 0.0. There is no 0.5 level: a body
    has no fence whose presence could earn partial credit. An empty body after a prompt that
    ends in a docstring parses (the docstring is a body) and gets 1.0; its tests then fail.

    >>> format_reward_body("    return x + 1\\n", "def f(x):\\n")
    1.0
    >>> format_reward_body("    return (x + 1\\n", "def f(x):\\n")
    0.0
    """
    return 1.0 if _parses(prompt + completion) else 0.0


def code_reward(result: ExecutionResult) -> float:
    """Fraction of the task's tests that passed.

    A test that timed out (or crashed) counts as failed; the tests that passed still count,
    so a program that passes 2 of 4 tests and then hangs gets 0.5, not 0. Tests the sandbox
    never reached (after a fatal error) count as failed: the denominator is the task's number
    of tests. A program without tests scores 1.0 if it ran to the end, else 0.0.

    >>> from demask.execution.types import ExecutionResult, Verdict
    >>> code_reward(ExecutionResult(Verdict.TIMEOUT, tests_passed=2, tests_total=4,
    ...     per_test=[Verdict.PASSED, Verdict.PASSED, Verdict.TIMEOUT]))
    0.5
    """
    total = max(result.tests_total, len(result.per_test))
    if total == 0:
        return 1.0 if result.verdict is Verdict.PASSED else 0.0
    if result.per_test:
        passed = sum(1 for v in result.per_test if v is Verdict.PASSED)
    else:
        passed = result.tests_passed
    return passed / total


def combine(code: float, fmt: float, w_code: float = 2.0, w_format: float = 0.5) -> float:
    """The coupled-GRPO reward ``w_code * code + w_format * format`` (paper: 2.0 and 0.5).

    >>> combine(0.5, 1.0)
    1.5
    """
    return w_code * code + w_format * fmt


# ---------------------------------------------------------------------- batch scoring
class SupportsRunMany(Protocol):
    """What the rewards need from a sandbox (``demask.execution.Sandbox``): run programs and
    yield ``(index, result)`` pairs as they complete, in any order."""

    def run_many(self, programs: Iterable[Program]) -> Iterable[tuple[int, ExecutionResult]]: ...


@dataclass(frozen=True)
class RewardBreakdown:
    """One completion's reward and its parts.

    result: the sandbox's result, or None when the code was not run (format < 1, or a
        reward without a code term).
    """

    total: float
    code: float
    format: float
    result: ExecutionResult | None = None


STYLES = ("body", "chat")


def completion_program(
    completion: str, task: Task, style: str, response_prefix: str = "", timeout_s: float | None = None
) -> Program:
    """The program the sandbox runs for one completion.

    body: ``task.program(completion)`` (prompt + body for prefix tasks).
    chat: the fenced block's code as a whole program (plus the task's setup), whatever the
        task's ``prefix_prompt``: a chat answer restates the function it defines. An answer
        without a single block becomes an empty program (its tests fail).
    """
    if style == "body":
        return task.program(completion, timeout_s)
    code = extract_code_block(response_prefix + completion) or ""
    return dataclasses.replace(task, prefix_prompt=False).program(code, timeout_s)


def format_score(completion: str, task: Task, style: str, response_prefix: str = "") -> float:
    """:func:`format_reward_body` or :func:`format_reward_chat` by ``style``."""
    if style == "body":
        return format_reward_body(completion, task.prompt)
    if style == "chat":
        return format_reward_chat(response_prefix + completion)
    raise ValueError(f"unknown completion style {style!r}; use one of {STYLES}")


def compute_rewards(
    completions: Sequence[str],
    tasks: Sequence[Task],
    sandbox: SupportsRunMany | None,
    *,
    style: str = "body",
    w_code: float = 2.0,
    w_format: float = 0.5,
    response_prefix: str = "",
    code_requires_format: bool = True,
    timeout_s: float | None = None,
) -> list[RewardBreakdown]:
    """Score completions (``completions[i]`` answers ``tasks[i]``) in one ``run_many`` call.

    The code term is computed only for completions whose format score is 1.0 when
    ``code_requires_format`` (the paper); the others get code = 0 and are never run. With
    ``w_code == 0`` nothing is run and ``sandbox`` may be None.
    """
    if len(completions) != len(tasks):
        raise ValueError(
            f"{len(completions)} completions but {len(tasks)} tasks; pass one task "
            "per completion (repeat a task G times for a group)"
        )
    if style not in STYLES:
        raise ValueError(f"unknown completion style {style!r}; use one of {STYLES}")
    fmts = [format_score(c, t, style, response_prefix) for c, t in zip(completions, tasks)]
    to_run = [i for i, f in enumerate(fmts) if w_code != 0 and (f == 1.0 or not code_requires_format)]
    results: dict[int, ExecutionResult] = {}
    if to_run:
        if sandbox is None:
            raise ValueError(
                "the code reward needs a sandbox (demask.execution.Sandbox); "
                "pass one, or set w_code=0 for a format-only reward"
            )
        programs = [completion_program(completions[i], tasks[i], style, response_prefix, timeout_s) for i in to_run]
        outs = dict(sandbox.run_many(programs))
        if sorted(outs) != list(range(len(programs))):
            raise RuntimeError(f"sandbox returned results for {sorted(outs)} but was given {len(programs)} programs")
        results = {i: outs[k] for k, i in enumerate(to_run)}
    out = []
    for i, fmt in enumerate(fmts):
        result = results.get(i)
        code = code_reward(result) if result is not None else 0.0
        out.append(RewardBreakdown(combine(code, fmt, w_code, w_format), code, fmt, result))
    return out


# ---------------------------------------------------------------------- interface + registry
class RewardFn(ABC):
    """Turns a batch of completions (one task each) into rewards; registered by name."""

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({"sandbox"})
    """What the trainer must hand the reward: ``"sandbox"`` (it runs programs) or nothing."""

    @property
    def requirements(self) -> frozenset[str]:
        """This reward's declared needs (the class's ``requires``, unless an instance says otherwise)."""
        return self.requires

    @abstractmethod
    def __call__(
        self, completions: Sequence[str], tasks: Sequence[Task], sandbox: SupportsRunMany | None = None
    ) -> list[RewardBreakdown]:
        """One :class:`RewardBreakdown` per completion, in order."""

    def score_round(
        self,
        completions: Sequence[str],
        tasks: Sequence[Task],
        sandbox: SupportsRunMany | None,
        nfe: Sequence[int],
    ) -> list[RewardBreakdown]:
        """What a round's trainer calls, with every rollout's forward-pass count; a reward that
        penalises compute (``requires`` holds ``"nfe"``) overrides this, the others ignore it."""
        return self(completions, tasks, sandbox)


@dataclass
class FunctionReward(RewardFn):
    """A plain function ``fn(completions, tasks, sandbox) -> [RewardBreakdown]`` as a reward;
    it declares what it needs in ``needs`` (default: nothing, so no sandbox is started for it)."""

    fn: Callable[..., list[RewardBreakdown]]
    needs: frozenset[str] = frozenset()

    @property
    def requirements(self) -> frozenset[str]:
        return self.needs

    def __call__(self, completions, tasks, sandbox=None):
        return self.fn(completions, tasks, sandbox)


def as_reward(reward: RewardFn | Callable[..., list[RewardBreakdown]]) -> RewardFn:
    """A RewardFn as it is; a plain function wrapped in :class:`FunctionReward`."""
    return reward if isinstance(reward, RewardFn) else FunctionReward(reward)


REWARDS: Registry[type[RewardFn]] = Registry("reward", base=RewardFn)
register_reward = REWARDS.register
REWARDS.register_lazy("correct_nfe", "demask.training.posttrain.unmasking:CorrectNFE")


def reward_names() -> list[str]:
    return REWARDS.names()


def get_reward(name: str, **kwargs) -> RewardFn:
    """Build a registered reward: ``get_reward("code_format", style="chat")``."""
    return REWARDS.create(name, **kwargs)


@register_reward("code_format")
@dataclass
class CodeFormatReward(RewardFn):
    """DiffuCoder's reward ``w_code * code + w_format * format``; code only when format == 1.

    style: "body" (the completion continues the prompt: TinyCode, HumanEval prefix) or "chat"
        (the completion is an answer with one fenced python block).
    response_prefix: chat only, text prefilled before the completion (DiffuCoder-Instruct
        prefills "Here is the code to solve this problem:\\n```python\\n").
    timeout_s: per-program wall-clock limit; None = the sandbox's default.
    """

    style: str = "body"
    w_code: float = 2.0
    w_format: float = 0.5
    response_prefix: str = ""
    code_requires_format: bool = True
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(
                f"{type(self).__name__}.style={self.style!r} is not one of {STYLES}; "
                "use 'body' for prompt-continuation tasks, 'chat' for fenced answers"
            )
        if self.w_code < 0 or self.w_format < 0:
            raise ValueError(f"reward weights must be >= 0, got w_code={self.w_code}, w_format={self.w_format}")
        if self.response_prefix and self.style != "chat":
            raise ValueError("response_prefix only applies to style='chat'")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 or None, got {self.timeout_s}")

    def __call__(self, completions, tasks, sandbox=None):
        return compute_rewards(
            completions,
            tasks,
            sandbox,
            style=self.style,
            w_code=self.w_code,
            w_format=self.w_format,
            response_prefix=self.response_prefix,
            code_requires_format=self.code_requires_format,
            timeout_s=self.timeout_s,
        )


@register_reward("pass_rate")
@dataclass
class PassRateReward(CodeFormatReward):
    """Only the test pass rate: every completion is run, whatever its format."""

    w_code: float = 1.0
    w_format: float = 0.0
    code_requires_format: bool = False


@register_reward("format")
@dataclass
class FormatReward(CodeFormatReward):
    """Only the format score; runs nothing and needs no sandbox."""

    requires: ClassVar[frozenset[str]] = frozenset()
    w_code: float = 0.0
    w_format: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_code != 0:
            raise ValueError("FormatReward has no code term; use 'code_format' for w_code > 0")


@register_reward("shuffled_code_format")
@dataclass
class ShuffledCodeFormatReward(CodeFormatReward):
    """A control, not a reward to train with: ``code_format`` computed as usual, then permuted
    at random among the completions of the same task in the batch (a GRPO group). Every group
    keeps its rewards, hence the same advantages, uniform groups and filtering, but which
    completion gets which is chance: a run with it measures what GRPO's updates do to a model
    when the reward carries no information about the completions.

    The permutation is seeded by ``seed`` and the batch's completions and task ids, so a
    resumed run draws the same ones.
    """

    seed: int = 0

    def __call__(self, completions, tasks, sandbox=None):
        scored = super().__call__(completions, tasks, sandbox)
        digest = hashlib.sha256(repr((self.seed, list(completions), [t.task_id for t in tasks])).encode()).digest()
        rng = random.Random(digest)
        out = []
        for _, run in itertools.groupby(range(len(tasks)), key=lambda i: tasks[i].task_id):
            group = list(run)  # a run of one task: a group
            rng.shuffle(group)
            out += [scored[j] for j in group]
        return out
