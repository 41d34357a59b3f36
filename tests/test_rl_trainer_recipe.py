"""GRPO recipes and the `demask grpo` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from demask.cli.main import app
from demask.training.rl.grpo_recipe import (
    GRPORecipe,
    dump_grpo_recipe,
    load_grpo_recipe,
    override_grpo_recipe,
    set_recipe_fields,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [
    ROOT / "recipes/tinycode/coupled_grpo.yaml",
    ROOT / "recipes/tinycode/grpo_estimators.yaml",
    ROOT / "recipes/tinycode/grpo_fresh.yaml",
    ROOT / "recipes/diffucoder-7b/coupled_grpo.yaml",
]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_recipes_load_and_round_trip(path, tmp_path):
    recipe = load_grpo_recipe(path)
    assert recipe.grpo.estimator == "coupled" and recipe.grpo.advantage == "loo"
    assert recipe.grpo.epsilon == 0.5 and recipe.grpo.beta == 0.01
    assert recipe.grpo.rollout.policy == "entropy" and recipe.grpo.rollout.top_p == 0.95
    assert recipe.train.max_steps % recipe.grpo.inner_iterations == 0
    copy = tmp_path / "r.yaml"
    copy.write_text(dump_grpo_recipe(recipe))
    assert load_grpo_recipe(copy) == recipe


def test_paper_recipe_has_the_paper_settings():
    r = load_grpo_recipe(RECIPES[-1])
    assert (r.grpo.group_size, r.grpo.rollout.temperature, r.grpo.rollout.gen_length) == (10, 1.2, 256)
    assert (r.train.lr, r.train.beta2, r.train.grad_clip, r.train.weight_decay) == (1e-6, 0.99, 0.2, 0.1)
    assert (r.grpo.ref_sync_every, r.grpo.ref_mixup, r.grpo.inner_iterations) == (64, 0.6, 2)
    assert r.grpo.reward_options == {
        "style": "chat",
        "w_code": 2.0,
        "w_format": 0.5,
        "response_prefix": "Here is the code to solve this problem:\n```python\n",
    }


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo:\n  group_sise: 4\n")
    with pytest.raises(ValueError, match="group_sise.*group_size"):
        load_grpo_recipe(bad)


def test_overrides():
    r = override_grpo_recipe(GRPORecipe(), out_dir="x", max_steps=4, estimator="d1", seed=3)
    assert (r.train.out_dir, r.train.max_steps, r.train.seed, r.grpo.estimator) == ("x", 4, 3, "d1")
    assert r.train.warmup_steps <= 4


def test_set_recipe_fields_reads_dotted_keys_and_yaml_values():
    base = load_grpo_recipe(RECIPES[0])
    r = set_recipe_fields(
        base,
        [
            "grpo.advantage=loo_positive",
            "train.lr=1e-4",
            "grpo.rollout.policy=confidence",
            "grpo.rollout.temperature=0.8",
            "grpo.loss_tokens=all",
            "eval=null",
            "task_options={n_fresh: 50}",
            "tasks=tinycode:fresh",
        ],
    )
    assert (r.grpo.advantage, r.train.lr, r.grpo.loss_tokens, r.eval) == ("loo_positive", 1e-4, "all", None)
    assert (r.grpo.rollout.policy, r.grpo.rollout.temperature) == ("confidence", 0.8)
    assert (r.tasks, r.task_options) == ("tinycode:fresh", {"n_fresh": 50})
    assert r.grpo.rollout.gen_length == base.grpo.rollout.gen_length  # the rest untouched
    assert set_recipe_fields(base, []) == base


@pytest.mark.parametrize(
    "setting, match",
    [
        ("grpo.advantage", "KEY=VALUE"),
        ("grpo..beta=1", "KEY=VALUE"),
        ("grpo.advantge=loo", "advantge.*advantage"),
        ("grop.beta=0.1", "grop.*grpo"),
        ("train.lr.x=1", "is a value"),
        ("grpo.loss_tokens=everything", "through_end"),
    ],
)
def test_set_recipe_fields_names_what_is_wrong(setting, match):
    with pytest.raises(ValueError, match=match):
        set_recipe_fields(load_grpo_recipe(RECIPES[0]), [setting])


def test_former_block_name_training_still_reads_with_a_warning(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("training:\n  lr: 0.001\n")
    with pytest.warns(DeprecationWarning, match="'train:'"):
        assert load_grpo_recipe(old).train.lr == 0.001
    with pytest.warns(DeprecationWarning, match="'training' is called 'train'"):
        assert set_recipe_fields(GRPORecipe(), ["training.lr=0.002"]).train.lr == 0.002


def test_cli_set_errors_exit_2_with_the_message():
    result = CliRunner().invoke(app, ["grpo", "--recipe", str(RECIPES[0]), "--set", "grpo.betta=0"])
    assert result.exit_code == 2 and "beta" in result.output


def test_cli_rejects_a_misspelt_estimator():
    result = CliRunner().invoke(app, ["grpo", "--recipe", str(RECIPES[0]), "--estimator", "copled"])
    assert result.exit_code == 2
    assert "coupled" in result.output


def test_cli_help_lists_the_options():
    result = CliRunner().invoke(app, ["grpo", "--help"])
    assert result.exit_code == 0
    for flag in ("--recipe", "--out", "--max-steps", "--estimator", "--seed", "--set", "--resume"):
        assert flag in result.output


@pytest.mark.slow
def test_cli_runs_the_tinycode_recipe_end_to_end(tmp_path):
    """Two updates of coupled-GRPO from the shipped SFT model, real rollouts and sandbox."""
    import dataclasses

    from demask.training.rl.grpo_recipe import run_grpo_recipe

    recipe = load_grpo_recipe(RECIPES[0])
    recipe = dataclasses.replace(
        recipe,
        task_options={"n_train": 300},
        max_tasks=16,
        eval=None,
        grpo=recipe.grpo.replace(group_size=2, prompts_per_step=2, rollout=recipe.grpo.rollout.replace(steps=12)),
        train=recipe.train.replace(max_steps=2, out_dir=str(tmp_path), progress=False, save_every=2),
    )
    res = run_grpo_recipe(recipe, log=None)
    assert res.step == 2
    m = res.metrics
    assert 0.0 <= m["reward_mean"] <= 2.5 and 0.0 <= m["pass_rate"] <= 1.0
    assert 1 <= m["nfe_mean"] <= 12
    assert (tmp_path / "checkpoint-0000002" / "model.safetensors").is_file()
    assert (tmp_path / "checkpoint-0000002" / "grpo_recipe.yaml").is_file()
    assert "reward_mean" in (tmp_path / "grpo_log.csv").read_text().splitlines()[0]
