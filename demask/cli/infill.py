"""`demask infill`: fill in the middle between a prefix and a suffix (docs/infilling.md).

    demask infill --checkpoint runs/infill-mdm/final --prefix $'def f(n):\\n    n = n + 1\\n' \\
        --suffix $'    return n\\n' [--max-new-tokens 12] [--set policy=threshold]

Prints the middle on stdout (prefix and suffix are not repeated); with ``--show`` the whole
program with the middle marked.
"""

from __future__ import annotations

import typer

from demask.cli.options import reported_errors


def infill_command(
    checkpoint: str = typer.Option(..., "--checkpoint", help="A full-attention diffusion model: name or folder."),
    prefix: str = typer.Option(..., "--prefix", help="Text before the middle (in bash, $'...' gives newlines)."),
    suffix: str = typer.Option(..., "--suffix", help="Text after the middle."),
    max_new_tokens: int | None = typer.Option(
        None, "--max-new-tokens", help="The middle's length in tokens; unset: the length the model finds likeliest."
    ),
    lengths: str | None = typer.Option(None, "--lengths", help="Candidate lengths without --max-new-tokens: 1-32."),
    seed: int = typer.Option(0, "--seed"),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16 or int8."),
    show: bool = typer.Option(False, "--show", help="Print the whole program, the middle marked."),
    settings: list[str] = typer.Option([], "--set", help="DecodeConfig fields, KEY=VALUE (policy=threshold)."),
) -> None:
    """Fill in the middle between PREFIX and SUFFIX with a diffusion model."""
    with reported_errors():
        import demask
        from demask.config import apply_settings
        from demask.decoding.config import DecodeConfig

        options = apply_settings({}, settings, DecodeConfig, example="policy=threshold")
        candidates = None
        if lengths is not None:
            lo, dash, hi = lengths.partition("-")
            try:
                candidates = list(range(int(lo), int(hi) + 1)) if dash else [int(x) for x in lengths.split(",")]
            except ValueError:
                raise ValueError(f"--lengths {lengths!r}: write a range (4-24) or a list (8,12,16)") from None
        llm = demask.load(checkpoint, dtype=dtype)
        middle = llm.infill(prefix, suffix, max_new_tokens=max_new_tokens, lengths=candidates, seed=seed, **options)
        if show:
            from rich.console import Console
            from rich.text import Text

            Console().print(Text(prefix) + Text(middle, style="black on yellow") + Text(suffix))
        else:
            typer.echo(middle)


def register(app: typer.Typer) -> None:
    app.command("infill")(infill_command)
