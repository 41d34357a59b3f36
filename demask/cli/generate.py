"""`demask generate`: decode one prompt with any policy and print the completion.

``--show`` also draws the order in which tokens were committed: each token's background
is its commit step, from blue (first) to red (last); tokens committed together share a
colour. The options are :class:`GenerateConfig`'s fields and its DecodeConfig's
(demask.cli.options); a policy's own knobs go through ``--set policy_options.NAME=VALUE``.
"""

from __future__ import annotations

import colorsys
import dataclasses
import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import typer

from demask.cli.options import command, config_flags, default_gen_length, gather, set_path
from demask.decoding.config import DecodeConfig


def step_colour(step: int, n_steps: int) -> str:
    """Hex colour of a commit step: hue from blue (step 0) to red (the last step)."""
    frac = step / max(n_steps - 1, 1)
    r, g, b = colorsys.hsv_to_rgb((2 / 3) * (1 - frac), 0.55, 0.95)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def render_commit_order(pieces: list[str], steps: list[int], n_steps: int):
    """A rich Text of the token texts, each on the background colour of its commit step."""
    from rich.text import Text

    text = Text()
    for piece, step in zip(pieces, steps):
        style = "dim" if step < 0 else f"black on {step_colour(step, n_steps)}"
        # keep line breaks outside the coloured span so blocks of code stay readable
        lines = piece.split("\n")
        for j, line in enumerate(lines):
            if j:
                text.append("\n")
            if line:
                text.append(line, style=style)
    return text


def legend(n_steps: int, width: int = 24):
    from rich.text import Text

    text = Text("commit step: 1 ")
    marks = min(n_steps, width)
    for i in range(marks):
        step = round(i * (n_steps - 1) / max(marks - 1, 1))
        text.append("  ", style=f"on {step_colour(step, n_steps)}")
    text.append(f" {n_steps}")
    return text


@dataclass
class GenerateConfig:
    """What `demask generate` is asked to do."""

    checkpoint: str
    """Checkpoint directory (config.json, weights, tokenizer.json)."""
    prompt: str
    """The prompt text (in bash, $'...' gives newlines)."""
    show: bool = False
    """Draw the order in which the tokens were committed."""
    device: str = "cpu"
    """torch device, e.g. cpu or cuda."""
    dtype: str | None = None
    """Weights dtype (float32, bfloat16, ..., or int8: dynamic int8 Linear layers on the CPU); None: as stored."""
    decode: DecodeConfig = field(default_factory=lambda: DecodeConfig(seed=0))
    """The decoding settings (every DecodeConfig field is an option of its own). Without
    --gen-length, a demask-trained checkpoint decodes its own completion length (its
    recipe.yaml's data.completion_length)."""


FLAGS = config_flags(GenerateConfig, flatten=["decode"], skip=["trace"])
LEGACY_FLAGS = {"threshold": float, "factor": float, "gamma": float, "alg_temp": float}
"""Former options, now policy options (``--set policy_options.threshold=0.8``): still read,
with a deprecation message, until the next release."""


def generate_command(given: dict[tuple[str, ...], Any], settings: list[str], **legacy: Any) -> None:
    """Decode a completion for PROMPT and print it."""
    from demask.config import from_dict

    raw: dict[str, Any] = {"decode": {"seed": 0}}
    for name, value in legacy.items():
        if value is not None:
            typer.echo(
                f"warning: --{name.replace('_', '-')} is deprecated; write --set "
                f"policy_options.{name}={value} (the old option goes in the next release)",
                err=True,
            )
            set_path(raw, ("decode", "policy_options", name), value)
    gather(GenerateConfig, given, settings, raw, implicit="decode")
    default_gen_length(raw["decode"], raw.get("checkpoint", ""))
    config = from_dict(GenerateConfig, raw)
    decode = dataclasses.replace(config.decode, trace=config.show)
    generate_text(config, decode)


def generate_text(config: GenerateConfig, decode: DecodeConfig) -> None:
    import demask

    llm = demask.load(config.checkpoint, dtype=config.dtype, device=config.device)
    tokenizer = llm.tokenizer
    ids = tokenizer.encode(config.prompt)
    start = time.perf_counter()
    out = llm.decode([ids], decode, seed=decode.seed)
    seconds = time.perf_counter() - start
    completion = out.completions[0]
    typer.echo(tokenizer.decode(completion))
    n = len(completion)
    typer.echo(f"[{n} tokens, {out.nfe[0]} forward passes, {seconds:.2f} s]", err=True)
    if config.show:
        from rich.console import Console

        assert out.trace is not None  # decoded with trace=show
        row = out.trace.row(0)
        when = row.commit_steps()[:n]
        pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in completion]
        n_steps = max(len(row.steps), 1)
        console = Console(highlight=False)
        console.print(render_commit_order(pieces, when, n_steps))
        console.print(legend(n_steps))


def register(app: typer.Typer) -> None:
    legacy = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=typ | None,
            default=typer.Option(None, "--" + name.replace("_", "-"), hidden=True),
        )
        for name, typ in LEGACY_FLAGS.items()
    ]
    app.command("generate")(command(generate_command, FLAGS, legacy))
