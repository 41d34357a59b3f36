"""The README's first commands and its Python example, run as written (a smaller --limit and
a temporary output folder are the only changes), from a directory that is not the project."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def block_after(marker: str, language: str) -> str:
    """The fenced ``language`` block that follows the HTML comment ``marker``."""
    match = re.search(rf"<!-- {marker}.*?-->\s*```{language}\n(.*?)```", README, re.S)
    assert match, f"README.md has no ```{language} block after <!-- {marker} -->"
    return match.group(1)


def commands() -> list[str]:
    return [line for line in block_after("readme-commands", "bash").splitlines() if line.startswith("demask ")]


def test_the_readme_has_its_first_commands():
    names = [c.split()[1] for c in commands()]
    assert names == ["generate", "eval", "eval", "compare"]


@pytest.mark.slow
def test_the_readme_commands_run_as_written(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for command in commands():
        command = command.replace("--limit 32", "--limit 4")
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
    assert "pass@1" in (tmp_path / "runs" / "eval-block" / "results.json").read_text()


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    code = block_after("readme-python", "python")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout and "forward passes" in result.stdout
