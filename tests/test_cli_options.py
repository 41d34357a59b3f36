"""The one command-line convention (demask.cli.options) and the config helpers behind it."""

from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from demask.cli.options import command, config_flags, set_path
from demask.config import apply_settings, field_docs, from_dict, to_dict


@dataclass
class Inner:
    rate: float = 0.5
    """How fast."""
    knobs: dict = field(default_factory=dict)
    """Free-form options (no flag: --set only)."""
    seed: int = 7
    """Inner seed (the outer one takes the flag)."""


@dataclass
class Outer:
    name: str
    """Required name."""
    seed: int = 1
    """Outer seed."""
    verbose: bool = False
    """Talk more."""
    tags: list[str] | None = None
    """Repeatable tags."""
    inner: Inner = field(default_factory=Inner)


def app_for(**kw) -> tuple[typer.Typer, list]:
    seen: list = []

    def run(given, settings):
        raw: dict = {}
        apply_settings(raw, settings, Outer, implicit="inner")
        for path, value in given.items():
            set_path(raw, path, value)
        seen.append(from_dict(Outer, raw))

    app = typer.Typer()
    app.command("run")(command(run, config_flags(Outer, flatten=["inner"], **kw)))

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps the command name
        pass

    return app, seen


def test_fields_become_options_with_their_docs_and_defaults():
    app, _ = app_for()
    out = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    for text in (
        "--name",
        "Required name.",
        "--seed",
        "Outer seed.",
        "[default: 1]",
        "--verbose",
        "--no-verbose",
        "--tags",
        "--rate",
        "How fast.",
        "[default: 0.5]",
        "--set",
    ):
        assert text in out, text
    assert "--knobs" not in out and "Inner seed" not in out  # a dict, and a name already taken


def test_given_options_set_and_settings_reach_everything():
    app, seen = app_for()
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--name",
            "x",
            "--rate",
            "0.25",
            "--tags",
            "a",
            "--tags",
            "b",
            "--verbose",
            "--set",
            "knobs.depth=3",
            "--set",
            "inner.seed=9",
            "--set",
            "seed=2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen[-1] == Outer(name="x", seed=2, verbose=True, tags=["a", "b"], inner=Inner(0.25, {"depth": 3}, 9))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "rat=1"], "did you mean 'rate'"),
        (["--set", "inner.rate=fast"], "inner.rate must be a number"),
        (["--set", "name"], "write KEY=VALUE"),
        (["--set", "seed.x=1"], "seed is a value, not a block"),
    ],
)
def test_bad_settings_are_one_error_line(args, message):
    app, _ = app_for()
    result = CliRunner().invoke(app, ["run", "--name", "x", *args])
    assert result.exit_code == 2 and "error: " in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


def test_recipe_commands_say_the_default_comes_from_the_file():
    app, _ = app_for(from_file=True)
    out = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    assert "[default: from the recipe]" in out and "[default: 1]" not in out


def test_field_docs_and_round_trip():
    assert field_docs(Inner) == {
        "rate": "How fast.",
        "knobs": "Free-form options (no flag: --set only).",
        "seed": "Inner seed (the outer one takes the flag).",
    }
    value = Outer("n", tags=["t"], inner=Inner(knobs={"a": [1, 2]}))
    assert from_dict(Outer, to_dict(value)) == value
