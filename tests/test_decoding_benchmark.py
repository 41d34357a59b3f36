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


# --------------------------------------------------------------------------- --compare / --profile

COMPARE_SMALL = [
    "--n-tasks",
    "3",
    "--gen-length",
    "8",
    "--policies",
    "confidence@half",
    "threshold",
    "--caches",
    "none",
    "dual",
    "--batch-sizes",
    "1",
    "2",
    "--threads",
    "1",
    "--repeats",
    "1",
    "--random-prompts",
]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """A random causal model ("ar") and a random block-causal one with blocks of 4 ("block",
    with a decoders.json), saved as checkpoints: {name: directory}."""
    from helpers import tiny_checkpoint

    root = tmp_path_factory.mktemp("twins")
    tiny_checkpoint(root / "ar", causal=True)
    tiny_checkpoint(root / "block", block_size=4)
    decoders = {
        "best": {"policy": "confidence", "cache": "prefix", "gen_length": 16, "steps": 8},
        "fast": {"policy": "threshold", "policy_options": {"threshold": 0.5}, "cache": "dual"},
        "other": {"policy": "margin"},
    }
    (root / "block" / "decoders.json").write_text(json.dumps(decoders))
    return {"ar": root / "ar", "block": root / "block"}


def run_main(bench, argv):
    """bench.main(argv), leaving torch's thread count as it was."""
    n = torch.get_num_threads()
    try:
        return bench.main(argv)
    finally:
        torch.set_num_threads(n)


def test_compare_times_every_model_mode_and_batch_size_against_the_ar_twin(tmp_path, twins, capsys):
    bench = load_benchmark()
    compare = ["--compare", f"ar={twins['ar']}", "--compare", f"block={twins['block']}"]
    result = run_main(bench, ["--out", str(tmp_path / "c.json"), *compare, *COMPARE_SMALL])
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved == json.loads(json.dumps(result))
    cmp = saved["compare"]
    setup = cmp["setup"]
    assert setup["batch_sizes"] == [1, 2] and setup["reference"] == "ar" and setup["reference_mode"] == "autoregressive"
    assert setup["tasks"] is None and setup["random_prompts"] and setup["n_tasks"] == 3
    assert setup["dtype"] == "float32" and setup["threads"] == 1 and setup["clock"] == "wall"

    models = {m["name"]: m for m in cmp["models"]}
    assert [m["name"] for m in models["ar"]["modes"]] == ["autoregressive"]
    assert models["ar"]["attention"] == "causal"
    block_modes = {m["name"]: m for m in models["block"]["modes"]}
    assert list(block_modes) == [
        "confidence@half/none",
        "confidence@half/dual",
        "threshold/none",
        "threshold/dual",
        "best",
        "fast",
    ]  # decoders.json's "best" and "fast" only
    assert block_modes["best"]["source"] == block_modes["fast"]["source"] == "decoders.json"
    # gen_length is the run's; a fixed steps given for 16 tokens is scaled to 8
    assert block_modes["best"]["config"]["gen_length"] == 8 and block_modes["best"]["config"]["steps"] == 4
    # a block-causal model decodes in its own blocks
    assert block_modes["threshold/dual"]["config"]["block_length"] == 4

    rows = {(r["model"], r["mode"], r["batch_size"]): r for r in cmp["rows"]}
    expected = {("ar", "autoregressive", b) for b in (1, 2)} | {("block", m, b) for m in block_modes for b in (1, 2)}
    assert set(rows) == expected and len(cmp["rows"]) == len(expected)
    for (model, _, _), r in rows.items():
        assert r["tokens_per_s"] > 0 and r["nfe_per_token"] > 0
        assert r["pass_at_1"] is None and r["within_0.01_of_reference"] is None  # random prompts: n/a
        if model == "ar":
            assert r["ratio_to_reference"] == 1.0
            assert r["nfe"] <= 3 * 8  # one forward per token, 8 tokens per prompt at most
        else:
            assert r["ratio_to_reference"] > 0
    # confidence@half: two tokens per forward (4 for 8 tokens) whatever the cache and batch
    assert all(rows[("block", f"confidence@half/{c}", b)]["nfe"] <= 3 * 4 for c in ("none", "dual") for b in (1, 2))
    assert cmp["best_within_0.01"] == [{"batch_size": 1, "best": None}, {"batch_size": 2, "best": None}]
    out = capsys.readouterr().out
    assert "batch size 1 (reference: ar)" in out and "batch size 2 (reference: ar)" in out
    assert "within 0.01 of AR" in out and "n/a" in out


def test_compare_picks_the_reference_and_says_what_is_wrong(tmp_path, twins):
    bench = load_benchmark()
    out = ["--out", str(tmp_path / "c.json")]
    ar, block = f"ar={twins['ar']}", f"block={twins['block']}"
    cases = {
        ("--compare", "x"): "NAME=DIR",
        ("--compare", "ar=" + str(tmp_path / "nowhere")): "no checkpoint",
        ("--compare", ar, "a:r=" + str(twins["ar"])): "may not contain ':'",
        ("--compare", ar, "ar=" + str(twins["block"])): "twice",
        ("--compare", ar, block, "--reference", "block"): "not a causal one",
        ("--compare", ar, block, "--reference", "gpt"): "not one of the --compare models",
        ("--compare", block): "no causal model",
        ("--compare", ar, "--random-model"): "--random-prompts",
        ("--reference", "ar"): "belongs to --compare",
        ("--compare", ar, block, "--batch-sizes", "0"): "--batch-sizes 0",
        ("--compare", ar, block, "--gen-length", "6"): "multiple of 4",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit, match=message):
            run_main(bench, [*out, *argv, "--random-prompts"])


def test_best_within_takes_the_fastest_mode_that_keeps_up_with_the_reference():
    bench = load_benchmark()

    def row(model, mode, pass_at_1, ratio, bs=1):
        within = None if pass_at_1 is None else pass_at_1 >= 0.5 - 0.01 - 1e-9
        return {"model": model, "mode": mode, "batch_size": bs, "pass_at_1": pass_at_1,
                "ratio_to_reference": ratio, "within_0.01_of_reference": within, "tokens_per_s": ratio}  # fmt: skip

    rows = [
        row("ar", "autoregressive", 0.5, 1.0),
        row("block", "fast", 0.45, 3.0),  # faster, but loses pass@1
        row("block", "best", 0.49, 1.5),  # within 0.01
        row("block", "slow", 0.55, 0.5),
        row("block", "fast", 0.5, 9.0, bs=16),
    ]
    assert bench.best_within(rows, "ar", 1)["mode"] == "best"
    assert bench.best_within(rows, "ar", 16)["ratio_to_reference"] == 9.0
    assert bench.best_within(rows[:2], "ar", 1) is None  # the reference itself never counts


def test_profile_splits_decoding_time_into_forward_policy_and_loop(tmp_path, twins, capsys):
    bench = load_benchmark()
    compare = ["--compare", f"ar={twins['ar']}", f"block={twins['block']}"]
    argv = ["--out", str(tmp_path / "p.json"), *compare, *COMPARE_SMALL, "--profile", "block:fast"]
    result = run_main(bench, [*argv, "--profile-batches", "1", "--profile-top", "8"])
    report = result["profile"]
    assert (report["model"], report["mode"], report["batch_size"], report["batches"]) == ("block", "fast", 2, 1)
    shares = {c["name"]: c["share"] for c in report["categories"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert report["forward_share"] > 0 and shares["linear"] > 0 and shares["attention"] > 0
    assert shares["policy"] > 0 and shares["token_choice"] > 0 and shares["loop"] > 0
    assert len(report["top"]) == 8 and all(r["category"] in shares for r in report["top"])
    assert result["setup"]["config"]["policy"] == "threshold"
    out = capsys.readouterr().out
    assert "model forward, in all" in out and "policy / select" in out
    # default: the first diffusion model's first mode; unknown names are listed
    result = run_main(bench, [*argv[:-1], "--profile-batches", "1"])
    assert (result["profile"]["model"], result["profile"]["mode"]) == ("block", "confidence@half/none")
    with pytest.raises(SystemExit, match="its modes are"):
        run_main(bench, [*argv[:-1], "block:nope"])
    with pytest.raises(SystemExit, match="the models are"):
        run_main(bench, [*argv[:-1], "gpt:fast"])


def test_profile_without_compare_profiles_the_single_model(tmp_path):
    bench = load_benchmark()
    argv = ["--out", str(tmp_path / "p.json"), "--random-model", "--hidden", "32", "--layers", "1", "--vocab", "64"]
    result = run_main(bench, [*argv, *SMALL, "--profile", "threshold/dual", "--profile-batches", "2"])
    assert (result["profile"]["mode"], result["profile"]["batches"]) == ("threshold/dual", 2)
    assert result["profile"]["forward_share"] > 0
