"""`demask generate` on a tiny random checkpoint with a real tokenizer."""

import pytest
from helpers import tiny_model
from typer.testing import CliRunner

from demask.cli.generate import render_commit_order, step_colour
from demask.cli.main import app
from demask.decoding import DecodeConfig, generate
from demask.model import load_pretrained, save_pretrained, train_bpe_tokenizer

TEXT = ["def add(a, b):\n    return a + b\n", "def neg(x):\n    return -x\n"] * 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tok = train_bpe_tokenizer(TEXT, vocab_size=300)
    model = tiny_model(
        std=0.5,
        vocab_size=tok.vocab_size,
        num_heads=2,
        max_position_embeddings=128,
        mask_token_id=tok.mask_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_pretrained(model, path, tok)
    return path


def test_generate_prints_what_the_library_decodes(checkpoint):
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--checkpoint",
            str(checkpoint),
            "--prompt",
            "def add(a, b):\n",
            "--gen-length",
            "16",
            "--block-length",
            "8",
            "--policy",
            "threshold",
            "--set",
            "policy_options.threshold=0.5",
            "--cache",
            "dual",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    model, tok = load_pretrained(checkpoint)
    out = generate(
        model,
        [tok.encode("def add(a, b):\n")],
        DecodeConfig(
            gen_length=16, block_length=8, policy="threshold", policy_options={"threshold": 0.5}, cache="dual", seed=3
        ),
    )
    assert result.stdout.startswith(tok.decode(out.completions[0]))
    assert f"{out.nfe[0]} forward passes" in result.output


def test_show_draws_the_commit_order(checkpoint):
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "--checkpoint",
            str(checkpoint),
            "--prompt",
            "def neg(x):",
            "--gen-length",
            "8",
            "--show",
            "--no-early-stop",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "commit step: 1" in result.stdout and result.stdout.rstrip().endswith("8")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "confidense"], "did you mean 'confidence'"),
        (["--policy", "threshold", "--set", "policy_options.tresh=0.5"], "did you mean 'threshold'"),
        (["--set", "gen_lenght=8"], "did you mean 'gen_length'"),
    ],
)
def test_bad_option_is_reported(checkpoint, args, message):
    result = CliRunner().invoke(app, ["generate", "--checkpoint", str(checkpoint), "--prompt", "x", *args])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output


def test_former_policy_flags_still_work_with_a_warning(checkpoint):
    base = [
        "generate",
        "--checkpoint",
        str(checkpoint),
        "--prompt",
        "def f(x):",
        "--gen-length",
        "8",
        "--policy",
        "threshold",
    ]
    old = CliRunner().invoke(app, [*base, "--threshold", "0.5"])
    new = CliRunner().invoke(app, [*base, "--set", "policy_options.threshold=0.5"])
    assert old.exit_code == 0 and new.exit_code == 0, old.output + new.output
    assert "--threshold is deprecated" in old.output
    assert old.stdout.splitlines()[-1] == new.stdout.splitlines()[-1]


def test_colours_run_from_blue_to_red_and_newlines_stay_plain():
    assert step_colour(0, 5) == "#6d6df2" and step_colour(4, 5) == "#f26d6d"  # v(1 - s) = 0.4275 -> 0x6d
    text = render_commit_order(["a\n", "b"], [0, 1], 2)
    assert text.plain == "a\nb"
    styles = [str(span.style) for span in text.spans]
    assert styles == [f"black on {step_colour(0, 2)}", f"black on {step_colour(1, 2)}"]
