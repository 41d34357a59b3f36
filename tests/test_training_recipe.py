"""Recipes: the shipped ones load, typos are named, the CLI trains from one and resumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_pretrain_recipe
from typer.testing import CliRunner

from demask.training.config import TrainConfig
from demask.training.recipe import TrainRecipe, dump_recipe, from_dict, load_recipe

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "recipes").glob("**/*.yaml"))
TRAINING_RECIPES = [p for p in SHIPPED if not {"grpo", "teachers", "dllm"} & set(yaml.safe_load(p.read_text()))]
"""SFT recipes (GRPO recipes have a ``grpo:`` block, RRTF recipes ``teachers:``, policy recipes ``dllm:``)."""


def test_the_four_training_recipes_ship():
    names = {p.relative_to(ROOT / "recipes").as_posix() for p in TRAINING_RECIPES}
    assert {"tinycode/sft.yaml", "tinycode/sft_ar.yaml", "pretrain/stdlib.yaml", "diffucoder-7b/sft.yaml"} <= names


@pytest.mark.parametrize("path", TRAINING_RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_shipped_recipe_loads_and_round_trips(path, tmp_path):
    recipe = load_recipe(path)
    assert isinstance(recipe.train, TrainConfig)
    again = tmp_path / "again.yaml"
    again.write_text(dump_recipe(recipe))
    assert load_recipe(again) == recipe
    # Every key written in the file is a field (load_recipe would have refused it otherwise),
    # and the objective matches the model kind.
    assert recipe.model.config.causal == (recipe.train.objective == "autoregressive")


def test_tinycode_recipes_differ_only_in_the_model_kind_and_length():
    """The AR twin: same backbone, data, tokenizer and optimiser; causal attention, the
    next-token objective, and a shorter run (it converges in fewer steps)."""
    mdm = load_recipe(ROOT / "recipes/tinycode/sft.yaml")
    ar = load_recipe(ROOT / "recipes/tinycode/sft_ar.yaml")
    assert dataclasses.replace(ar.model, config=ar.model.config.replace(causal=False)) == mdm.model
    assert ar.data == mdm.data and ar.tokenizer == mdm.tokenizer
    assert (ar.train.max_steps, mdm.train.max_steps) == (1200, 3000)
    assert (
        ar.train.replace(
            objective=mdm.train.objective,
            out_dir=mdm.train.out_dir,
            max_steps=mdm.train.max_steps,
            eval_every=mdm.train.eval_every,
        )
        == mdm.train
    )


def test_former_flat_model_block_still_reads_with_a_warning(tmp_path):
    with pytest.warns(DeprecationWarning, match="'config:' block"):
        recipe = load_recipe(_write(tmp_path, "model:\n  hidden_size: 64\n  num_layers: 2\n  init_std: 0.01\n"))
    assert (recipe.model.config.hidden_size, recipe.model.config.num_layers, recipe.model.init_std) == (64, 2, 0.01)


def test_settings_reach_any_recipe_field(tmp_path):
    recipe = load_recipe(
        ROOT / "recipes/tinycode/sft.yaml", ["model.config.num_layers=2", "train.lr=1e-4", "data.options.n_train=100"]
    )
    assert (recipe.model.config.num_layers, recipe.train.lr, recipe.data.options["n_train"]) == (2, 1e-4, 100)
    with pytest.raises(ValueError, match="did you mean 'num_layers'"):
        load_recipe(ROOT / "recipes/tinycode/sft.yaml", ["model.config.num_layer=2"])


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_unknown_keys_name_the_key_and_the_closest_one(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key 'model.config.hiden_size'; did you mean 'hidden_size'\?"):
        load_recipe(_write(tmp_path, "model:\n  config:\n    hiden_size: 64\n"))
    with pytest.raises(ValueError, match=r"unknown key 'trian'; did you mean 'train'\?"):
        load_recipe(_write(tmp_path, "trian:\n  lr: 0.1\n"))
    with pytest.raises(ValueError, match="unknown data source 'tinycod'; did you mean 'tinycode'"):
        load_recipe(_write(tmp_path, "data:\n  source: tinycod\n"))


def test_values_are_type_checked_and_yaml_floats_read(tmp_path):
    recipe = load_recipe(_write(tmp_path, "train:\n  lr: 1e-3\n  grad_clip: null\n"))
    assert recipe.train.lr == 0.001 and recipe.train.grad_clip is None
    with pytest.raises(ValueError, match="train.lr must be a number, got 'fast'"):
        load_recipe(_write(tmp_path, "train:\n  lr: fast\n"))
    with pytest.raises(ValueError, match="train.max_steps must be an integer"):
        load_recipe(_write(tmp_path, "train:\n  max_steps: 1.5\n"))
    with pytest.raises(ValueError, match="warmup_steps=5 must lie in"):
        load_recipe(_write(tmp_path, "train:\n  max_steps: 2\n  warmup_steps: 5\n"))
    patterns = from_dict(TrainRecipe, {"data": {"patterns": ["*.py", "*.pyi"]}}).data.patterns
    assert patterns == ("*.py", "*.pyi")


def test_tinycode_options_are_checked(tmp_path):
    from demask.training.sources import build_source

    recipe = load_recipe(_write(tmp_path, "data:\n  source: tinycode\n  options:\n    n_trian: 5\n"))
    with pytest.raises(ValueError, match="did you mean 'n_train'"):
        build_source(recipe.data).texts()


def test_cli_pretrains_on_a_stdlib_slice_and_resumes(tmp_path):
    from demask.cli.main import app

    recipe = tiny_pretrain_recipe(tmp_path)
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(
        app,
        ["train", "--recipe", str(recipe), "--out", str(out), "--max-steps", "2", "--lr", "0.002", "--save-every", "1"],
    )
    assert first.exit_code == 0, first.output
    assert "5 files" in first.output and "done: 2 steps" in first.output
    state = torch.load(out / "checkpoint-0000002" / "trainer_state.pt", weights_only=True)
    assert state["config"]["lr"] == 0.002 and state["config"]["warmup_steps"] == 0
    assert load_recipe(out / "checkpoint-0000002" / "recipe.yaml").train.max_steps == 2
    second = runner.invoke(
        app, ["train", "--recipe", str(recipe), "--out", str(out), "--max-steps", "3", "--lr", "0.002", "--resume"]
    )
    assert second.exit_code == 0, second.output
    assert "done: 3 steps" in second.output
    assert (out / "latest").read_text().strip() == "checkpoint-0000003"


def test_cli_reports_recipe_errors(tmp_path):
    from demask.cli.main import app

    bad = _write(tmp_path, "train:\n  objectiv: mdm\n")
    result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code != 0
    assert "did you mean 'objective'" in str(result.exception) + result.output


def test_tinycode_recipe_trains_and_evaluates_pass_at_1(tmp_path):
    """The shipped TinyCode recipe, shrunk: a few steps, then pass@1 through decoding + sandbox."""
    from demask.model import ModelConfig
    from demask.training.recipe import ModelRecipe
    from demask.training.run import apply_overrides, run_recipe

    recipe = load_recipe(ROOT / "recipes/tinycode/sft.yaml")
    recipe = dataclasses.replace(
        recipe,
        model=ModelRecipe(
            config=ModelConfig(
                hidden_size=32,
                intermediate_size=64,
                num_layers=1,
                num_heads=2,
                num_kv_heads=2,
                max_position_embeddings=160,
            )
        ),
        data=dataclasses.replace(
            recipe.data, options={"n_train": 64, "compositions_per_depth": [4, 8, 8], "test_per_composition": 1}
        ),
        eval=dataclasses.replace(
            recipe.eval,
            max_tasks=2,
            batch_size=2,
            workers=1,
            decode={"gen_length": 48, "steps": 8, "policy": "confidence"},
        ),
    )
    recipe = apply_overrides(
        recipe, out_dir=str(tmp_path), max_steps=3, global_batch_size=8, log_every=1, progress=False
    )
    result = run_recipe(recipe, log=None)
    assert result.step == 3
    assert 0.0 <= result.metrics["eval/pass@1"] <= 1.0 and "eval/pass_rate" in result.metrics
    assert (tmp_path / "eval" / "step-0000003" / "samples.jsonl").is_file()
