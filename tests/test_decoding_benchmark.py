"""benchmarks/decode_speed.py runs end to end and writes the agreed JSON shape."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("decode_speed", ROOT / "benchmarks" / "decode_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["decode_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SMALL = [
    "--n-tasks",
    "2",
    "--gen-length",
    "8",
    "--block-length",
    "4",
    "--policies",
    "confidence@half",
    "threshold",
    "--caches",
    "none",
    "dual",
    "--threads",
    "1",
    "--repeats",
    "1",
]


def test_random_model_run_writes_the_json(tmp_path, capsys):
    bench = load_benchmark()
    n = torch.get_num_threads()
    try:
        result = bench.main(
            [
                "--out",
                str(tmp_path / "r.json"),
                "--random-model",
                "--hidden",
                "32",
                "--layers",
                "1",
                "--vocab",
                "64",
                *SMALL,
            ]
        )
    finally:
        torch.set_num_threads(n)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["baseline"].keys() >= {"tokens_per_s", "nfe_per_token", "pass_at_1"}
    assert [m["name"] for m in saved["modes"]] == [
        "confidence@half/none",
        "confidence@half/dual",
        "threshold/none",
        "threshold/dual",
    ]
    for m in [saved["baseline"]] + saved["modes"]:
        assert m["tokens_per_s"] > 0 and m["pass_at_1"] is None
    # no end token in the random model: every row decodes all 8 tokens; NFE per token exact
    assert saved["baseline"]["nfe_per_token"] == 1.0
    assert [m["nfe_per_token"] for m in saved["modes"][:2]] == [0.5, 0.5]
    assert saved["baseline"]["tokens"] == 16
    assert "baseline" in capsys.readouterr().out
    assert result["setup"]["n_tasks"] == 2


@pytest.mark.slow
def test_checkpoint_run_scores_pass_at_1_in_the_sandbox(tmp_path):
    from helpers import tiny_model

    from demask.model import save_pretrained, train_bpe_tokenizer
    from demask.tasks import load_tasks

    tasks = load_tasks("tinycode:test")[:2]
    tok = train_bpe_tokenizer([t.prompt + t.canonical_solution for t in load_tasks("tinycode:test")], vocab_size=300)
    model = tiny_model(
        std=0.02,
        vocab_size=tok.vocab_size,
        num_layers=1,
        num_heads=2,
        max_position_embeddings=512,
        mask_token_id=tok.mask_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    save_pretrained(model, tmp_path / "ckpt", tok)
    bench = load_benchmark()
    n = torch.get_num_threads()
    try:
        result = bench.main(["--out", str(tmp_path / "r.json"), "--checkpoint", str(tmp_path / "ckpt"), *SMALL])
    finally:
        torch.set_num_threads(n)
    assert result["setup"]["n_tasks"] == len(tasks) == 2
    for m in [result["baseline"]] + result["modes"]:
        assert m["pass_at_1"] in (0.0, 0.5, 1.0)
