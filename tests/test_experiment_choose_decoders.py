"""experiments/choose_decoders.py: the choice rule and the grids by model kind."""

import importlib.util
from pathlib import Path

from helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("choose_decoders", ROOT / "experiments/choose_decoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_best_is_the_top_pass_at_1_and_fast_the_quickest_within_001():
    choose = _script().choose
    rows = [
        {"policy": "a", "pass_at_1": 0.80, "tokens_per_s": 100},
        {"policy": "b", "pass_at_1": 0.81, "tokens_per_s": 90},
        {"policy": "c", "pass_at_1": 0.80, "tokens_per_s": 400},  # within 0.01 of b: the fast one
        {"policy": "d", "pass_at_1": 0.79, "tokens_per_s": 900},  # 0.02 below: too far
    ]
    best, fast = choose(rows)
    assert (best["policy"], fast["policy"]) == ("b", "c")
    tie = [{"policy": "x", "pass_at_1": 0.5, "tokens_per_s": 1}, {"policy": "y", "pass_at_1": 0.5, "tokens_per_s": 2}]
    assert [r["policy"] for r in choose(tie)] == ["y", "y"]  # a tie goes to the faster


def test_grids_fit_the_model_kind():
    from demask.decoding import DecodeConfig

    grid = _script().grid
    ar = grid(tiny_config(causal=True), 48)
    assert [p.name for p in ar] == ["autoregressive"]
    block = grid(tiny_config(block_size=8), 48)
    full = grid(tiny_config(), 48)
    assert any("threshold" in p.name for p in block) and any("blocks of 8" in p.name for p in full)
    for policy in block + full:  # every decoder is a valid DecodeConfig
        DecodeConfig.from_dict(policy.decode)
    assert all("block_length" not in p.decode for p in block)  # a block model decodes in its own blocks
