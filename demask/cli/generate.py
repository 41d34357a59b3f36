"""`demask generate`: decode one prompt with any policy and print the completion.

``--show`` also draws the order in which tokens were committed: each token's background
is its commit step, from blue (first) to red (last); tokens committed together share a
colour. Options mirror :class:`demask.decoding.DecodeConfig` and reuse its field docs.
"""

from __future__ import annotations

import colorsys
import time
from pathlib import Path
from typing import Optional

import typer

from demask.decoding.config import DecodeConfig, field_docs

_DOCS = field_docs(DecodeConfig)


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


def generate_command(
    checkpoint: Path = typer.Option(..., help="Checkpoint directory (config.json, weights, tokenizer.json)."),
    prompt: str = typer.Option(..., help="The prompt text (in bash, $'...' gives newlines)."),
    policy: str = typer.Option("confidence", help=_DOCS.get("policy", "")),
    steps: Optional[int] = typer.Option(None, help=_DOCS.get("steps", "")),
    gen_length: int = typer.Option(128, help=_DOCS.get("gen_length", "")),
    block_length: Optional[int] = typer.Option(None, help=_DOCS.get("block_length", "")),
    schedule: str = typer.Option("llada", help=_DOCS.get("schedule", "")),
    temperature: float = typer.Option(0.0, help=_DOCS.get("temperature", "")),
    top_p: float = typer.Option(1.0, help=_DOCS.get("top_p", "")),
    top_k: Optional[int] = typer.Option(None, help=_DOCS.get("top_k", "")),
    alg_temp: Optional[float] = typer.Option(None, help=_DOCS.get("alg_temp", "")),
    threshold: float = typer.Option(0.9, help=_DOCS.get("threshold", "")),
    factor: float = typer.Option(1.0, help=_DOCS.get("factor", "")),
    gamma: float = typer.Option(0.1, help=_DOCS.get("gamma", "")),
    cache: str = typer.Option("none", help=_DOCS.get("cache", "")),
    early_stop: bool = typer.Option(True, help=_DOCS.get("early_stop", "")),
    seed: int = typer.Option(0, help="Seed of the sampling generator."),
    show: bool = typer.Option(False, help="Draw the order in which the tokens were committed."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="Weights dtype (float32, bfloat16, ...); "
                                        "default: as stored."),
) -> None:
    """Decode a completion for PROMPT and print it."""
    from demask.decoding import generate
    from demask.model import load_pretrained

    config = DecodeConfig(
        gen_length=gen_length, steps=steps, block_length=block_length, policy=policy,
        schedule=schedule, temperature=temperature, top_p=top_p, top_k=top_k, alg_temp=alg_temp,
        threshold=threshold, factor=factor, gamma=gamma, cache=cache, early_stop=early_stop,
        trace=show, seed=seed)
    model, tokenizer = load_pretrained(checkpoint, dtype=dtype, device=device)
    ids = tokenizer.encode(prompt)
    start = time.perf_counter()
    out = generate(model, [ids], config)
    seconds = time.perf_counter() - start
    completion = out.completions[0]
    typer.echo(tokenizer.decode(completion))
    n = len(completion)
    typer.echo(f"[{n} tokens, {out.nfe[0]} forward passes, {seconds:.2f} s]", err=True)
    if show:
        from rich.console import Console

        row = out.trace.row(0)
        when = row.commit_steps()[:n]
        pieces = [tokenizer.decode([t], skip_special_tokens=False) for t in completion]
        n_steps = max(len(row.steps), 1)
        console = Console(highlight=False)
        console.print(render_commit_order(pieces, when, n_steps))
        console.print(legend(n_steps))


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_command)
