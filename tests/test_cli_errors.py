"""Bad inputs a new user types, each run as a real `demask` process: one `error:` line that
names the problem, a non-zero exit code, and never a traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from demask.model import shipped_models

SHIPPED = shipped_models()["tinycode-mdm"]
LONG_PROMPT = "def f(x):\n" + "    x = x + 1\n" * 60


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, Path]:
    """Copies of the shipped model with a corrupt config.json and a truncated weights file,
    a samples folder, a results file and a recipe with a misspelt key."""
    root = tmp_path_factory.mktemp("broken")
    bad_json, cut = root / "bad_json", root / "cut_weights"
    for target in (bad_json, cut):
        shutil.copytree(SHIPPED, target)
    (bad_json / "config.json").write_text("{not json")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (root / "recipe.yaml").write_text("train:\n  objectiv: masked-diffusion\n")
    (root / "a_file").write_text("x")
    (root / "a_folder").mkdir()
    (root / "samples.jsonl").write_text('{"task_id": "tinycode/0", "completion": "    return 0\\n"}\n')
    return {"bad_json": bad_json, "cut": cut, "root": root}


GEN = ("generate", "--prompt", "def f(x):", "--gen-length", "8")
CASES = {
    "missing checkpoint": (
        ("generate", "--checkpoint", "/no/such/dir", "--prompt", "x"),
        "no checkpoint at /no/such/dir",
    ),
    "corrupt config.json": ((*GEN, "--checkpoint", "{bad_json}"), "config.json is not valid JSON"),
    "truncated safetensors": ((*GEN, "--checkpoint", "{cut}"), "model.safetensors cannot be read as safetensors"),
    "bad dtype": ((*GEN, "--checkpoint", "tinycode-mdm", "--dtype", "float33"), "unknown dtype 'float33'"),
    "negative length": (
        ("generate", "--checkpoint", "tinycode-mdm", "--prompt", "x", "--gen-length", "-3"),
        "gen_length must be positive, got -3",
    ),
    "block length not dividing": (
        (*GEN, "--checkpoint", "tinycode-mdm", "--block-length", "3"),
        "block_length=3 must be positive and divide gen_length=8",
    ),
    "threshold 1.5": (
        (*GEN, "--checkpoint", "tinycode-mdm", "--policy", "threshold", "--set", "policy_options.threshold=1.5"),
        "threshold must lie in (0, 1], got 1.5",
    ),
    "unknown policy option": (
        (*GEN, "--checkpoint", "tinycode-mdm", "--policy", "threshold", "--set", "policy_options.treshold=0.5"),
        "did you mean 'threshold'",
    ),
    "over-long prompt": (
        ("generate", "--checkpoint", "tinycode-mdm", "--prompt", LONG_PROMPT),
        "more than the model's context of 160",
    ),
    "empty prompt": (("generate", "--checkpoint", "tinycode-mdm", "--prompt", ""), "prompt 0 is empty"),
    "unknown recipe key": (("train", "--recipe", "{root}/recipe.yaml"), "did you mean 'objective'"),
    "missing recipe": (("train", "--recipe", "{root}/none.yaml"), "no recipe at"),
    "eval --out is a file": (
        (
            "eval",
            "--checkpoint",
            "tinycode-mdm",
            "--tasks",
            "tinycode:test",
            "--n-samples",
            "1",
            "--limit",
            "1",
            "--out",
            "{root}/a_file",
        ),
        "is a file",
    ),
    "check-samples --out is a folder": (
        ("check-samples", "--tasks", "tinycode:test", "--samples", "{root}/samples.jsonl", "--out", "{root}/a_folder"),
        "is a directory",
    ),
}
if not torch.cuda.is_available():
    CASES["cuda without CUDA"] = ((*GEN, "--checkpoint", "tinycode-mdm", "--device", "cuda"), "no CUDA GPU")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_input_is_one_error_line(name, broken, tmp_path):
    args, message = CASES[name]
    args = [a.format(**{k: str(v) for k, v in broken.items()}) for a in args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "demask.cli.main", *args], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
