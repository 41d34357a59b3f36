"""Recipes ship inside the package: found by name from any directory, listed and copied by
`demask recipes`."""

import pytest
from typer.testing import CliRunner

from demask.cli.main import app
from demask.training.recipe import load_recipe, resolve_recipe, shipped_recipes
from demask.training.rl.grpo_recipe import load_grpo_recipe


def test_recipes_are_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"tinycode/sft", "tinycode/sft_ar", "tinycode/coupled_grpo", "diffucoder-7b/sft"} <= set(shipped_recipes())
    assert load_recipe("tinycode/sft").train.max_steps == 3000
    assert load_recipe("recipes/tinycode/sft.yaml") == load_recipe("tinycode/sft")  # the repository's spelling
    assert load_grpo_recipe("tinycode/coupled_grpo").policy == "tinycode-mdm"
    (tmp_path / "mine.yaml").write_text("train:\n  max_steps: 7\n  warmup_steps: 0\n")
    assert load_recipe("mine.yaml").train.max_steps == 7  # a file wins
    with pytest.raises(FileNotFoundError, match="no shipped recipe named 'tinycode/sfd'.*tinycode/sft"):
        resolve_recipe("tinycode/sfd")


def test_the_command_lists_prints_and_copies(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(app, ["recipes"])
    assert listed.exit_code == 0 and "tinycode/sft " in listed.output and "TinyCode SFT" in listed.output
    shown = runner.invoke(app, ["recipes", "tinycode/sft_ar"])
    assert shown.output == resolve_recipe("tinycode/sft_ar").read_text()
    copied = runner.invoke(app, ["recipes", "tinycode/sft", "--copy", str(tmp_path / "mine")])
    assert (
        copied.exit_code == 0
        and (tmp_path / "mine" / "sft.yaml").read_text() == resolve_recipe("tinycode/sft").read_text()
    )
    again = runner.invoke(app, ["recipes", "tinycode/sft", "--copy", str(tmp_path / "mine")])
    assert again.exit_code == 2 and "exists" in again.output
