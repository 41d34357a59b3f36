"""`demask view`: a local web page that replays a decode and runs new ones (docs/viewer.md).

    demask view [--model tinycode-mdm --model tinycode-block] [--port 8001] [--replay trace.json]
    demask view --save trace.json --prompt $'def f(n):\\n' [--model M] [--set policy=threshold]

Open http://127.0.0.1:8001/ in a browser; everything is served locally (no CDN).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from demask.cli.options import reported_errors


def view_command(
    models: list[str] = typer.Option(["tinycode-mdm", "tinycode-block"], "--model", help="Models to offer."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8001, "--port"),
    replay: Path | None = typer.Option(None, "--replay", help="A trace JSON to show when the page opens."),
    save: Path | None = typer.Option(None, "--save", help="Decode --prompt once, write its trace JSON and exit."),
    prompt: str | None = typer.Option(None, "--prompt", help="With --save: the prompt."),
    settings: list[str] = typer.Option([], "--set", help="With --save: DecodeConfig fields, KEY=VALUE."),
) -> None:
    """Replay a decode in the browser, step by step."""
    with reported_errors():
        import demask
        from demask.config import apply_settings
        from demask.decoding.config import DecodeConfig
        from demask.viewer.app import create_viewer_app, load_replay, trace_json

        if save is not None:
            if prompt is None:
                raise ValueError("--save needs --prompt (the text to decode)")
            options = apply_settings({}, settings, DecodeConfig, example="policy=threshold")
            data = trace_json(demask.load(models[0]), prompt, models[0], **options)
            save.write_text(json.dumps(data, indent=1) + "\n")
            typer.echo(f"wrote {save}: {data['nfe']} forward passes, {len(data['steps'])} steps")
            return
        trace = load_replay(replay) if replay is not None else None
        import functools

        import uvicorn

        app = create_viewer_app({m: functools.partial(demask.load, m) for m in models}, trace)
        typer.echo(f"demask view on http://{host}:{port}/  (Ctrl-C stops)", err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
