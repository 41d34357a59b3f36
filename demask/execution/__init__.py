"""Run untrusted programs under limits: a warm worker pool with per-run isolation.

Usable on its own (imports nothing else of demask). See docs/sandbox.md.
"""

from .config import SandboxConfig
from .sandbox import Sandbox, run_programs
from .types import ExecutionResult, Program, Verdict

__all__ = ["ExecutionResult", "Program", "Sandbox", "SandboxConfig", "Verdict", "run_programs"]
