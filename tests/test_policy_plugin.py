"""A new unmasking policy is one class in one file, registered by name, and then usable from
the library, recipes and the command line without editing any file of demask.

The "user's package" is a module this test writes into a temporary folder on sys.path.
"""

import sys
import textwrap

import pytest
from helpers import tiny_checkpoint
from typer.testing import CliRunner

from demask.cli.main import app
from demask.decoding import POLICIES, DecodeConfig, generate
from demask.decoding.mock import tiny_transformer
from demask.training.recipe import EvalRecipe

PLUGIN = '''
"""A user's policy: the rightmost masked positions first, ``stride`` of them a step at most."""
import torch

from demask.decoding import POLICIES, ScoredPolicy, StepState


class RightToLeft(ScoredPolicy):
    def __init__(self, bonus: float = 0.0, alg_temp=None):
        super().__init__(alg_temp)
        if bonus < 0:
            raise ValueError(f"bonus must be >= 0, got {bonus}")
        self.bonus = bonus

    def score(self, state: StepState) -> torch.Tensor:
        a, s = state.masked.shape
        return torch.arange(s, dtype=torch.float32).expand(a, s) + self.bonus


POLICIES.register("right-to-left", "r2l", replace=True)(RightToLeft)
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The module name of a freshly written user package (not imported yet)."""
    name = f"user_policies_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def commit_order(out) -> list[int]:
    """The completion positions of row 0 in the order they were committed."""
    return [i for _, i in sorted((s, i) for i, s in enumerate(out.trace.row(0).commit_steps()))]


def test_a_lazily_registered_policy_is_imported_on_first_use(plugin):
    POLICIES.register_lazy("lazy-r2l", f"{plugin}:RightToLeft", replace=True)
    assert plugin not in sys.modules  # registering imported nothing
    config = DecodeConfig(gen_length=6, policy="lazy-r2l", trace=True, early_stop=False)
    assert plugin in sys.modules
    out = generate(tiny_transformer(shifted=True), [[1, 2, 3]], config)
    assert commit_order(out) == [5, 4, 3, 2, 1, 0]
    assert "lazy-r2l" in POLICIES.names()


def test_a_module_reference_works_without_registering(plugin):
    config = DecodeConfig(gen_length=4, policy=f"{plugin}:RightToLeft", trace=True, early_stop=False)
    out = generate(tiny_transformer(shifted=True), [[1, 2]], config)
    assert commit_order(out) == [3, 2, 1, 0]


def test_the_policy_options_are_checked_against_its_arguments(plugin):
    __import__(plugin)  # registers "right-to-left" and its alias "r2l"
    assert DecodeConfig(policy="R2L", policy_options={"bonus": 1.0}).make_policy().bonus == 1.0
    with pytest.raises(ValueError, match="has no option 'bonsu'; did you mean 'bonus'"):
        DecodeConfig(policy="right-to-left", policy_options={"bonsu": 1.0})
    with pytest.raises(ValueError, match="bonus must be >= 0"):
        DecodeConfig(policy="right-to-left", policy_options={"bonus": -1.0})
    with pytest.raises(TypeError, match="is not a UnmaskingPolicy"):
        POLICIES.register("not-a-policy")(dict)


def test_a_recipe_names_the_policy(plugin):
    recipe = EvalRecipe(decode={"policy": f"{plugin}:RightToLeft", "policy_options": {"bonus": 2.0}})
    config = recipe.decode_config(gen_length=8)
    assert (config.gen_length, config.make_policy().bonus) == (8, 2.0)


def test_the_command_line_uses_the_policy(plugin, tmp_path):
    model, tok = tiny_checkpoint(tmp_path / "ckpt")
    args = [
        "generate",
        "--checkpoint",
        str(tmp_path / "ckpt"),
        "--prompt",
        "def f(x):",
        "--gen-length",
        "8",
        "--no-early-stop",
        "--policy",
        f"{plugin}:RightToLeft",
        "--set",
        "policy_options.bonus=0.5",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    library = generate(
        model,
        [tok.encode("def f(x):")],
        DecodeConfig(
            gen_length=8, early_stop=False, seed=0, policy=f"{plugin}:RightToLeft", policy_options={"bonus": 0.5}
        ),
    )
    assert result.stdout.startswith(tok.decode(library.completions[0]))
    bad = CliRunner().invoke(app, [*args[:-1], "policy_options.bonus=-1"])
    assert bad.exit_code == 2 and "error: bonus must be >= 0" in bad.output
