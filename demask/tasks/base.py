"""A task: a prompt for the model, tests for the sandbox, and how to assemble the program."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demask.execution.types import Program


@dataclass(frozen=True)
class Task:
    """One programming problem.

    prompt: what the model is given (for HumanEval shape: signature + docstring).
    tests: separable test snippets (asserts), run one by one after the program; their pass
        rate is the reward. HumanEval's single ``check(candidate)`` test is one snippet.
    entry_point: the function under test.
    prefix_prompt: if True the program is ``prompt + completion`` (HumanEval style, the
        completion is a body); if False the completion is a whole program (MBPP style).
    setup: code run before the program (imports a task's tests need).
    """

    task_id: str
    prompt: str
    tests: tuple[str, ...]
    entry_point: str
    canonical_solution: str = ""
    prefix_prompt: bool = True
    setup: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def program(self, completion: str, timeout_s: float | None = None) -> Program:
        body = self.prompt + completion if self.prefix_prompt else completion
        code = (self.setup + "\n" if self.setup else "") + body
        return Program(code=code, tests=self.tests, timeout_s=timeout_s)

    def reference_program(self, timeout_s: float | None = None) -> Program:
        return self.program(self.canonical_solution, timeout_s)
