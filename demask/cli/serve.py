"""`demask serve`: an OpenAI-compatible server for one model (docs/serving.md).

    demask serve --model tinycode-mdm [--host 127.0.0.1] [--port 8000] [--dtype int8] [--max-batch 32]

Then any OpenAI client: ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")``.
"""

from __future__ import annotations

import typer

from demask.cli.options import reported_errors


def serve_command(
    model: str = typer.Option(..., "--model", help="A shipped model name, a checkpoint folder or a hub id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: every one)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16 or int8 (dynamic int8 Linear layers)."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    max_batch: int = typer.Option(32, "--max-batch", help="Completions decoded together at most (1: one at a time)."),
    max_n: int = typer.Option(8, "--max-n", help="Largest n a request may ask for."),
    max_queued: int = typer.Option(1024, "--max-queued", help="Completions waiting at most; beyond, 429."),
) -> None:
    """Serve a model over HTTP with OpenAI's completions and chat completions API."""
    with reported_errors():
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise ValueError('demask serve needs fastapi and uvicorn: pip install -e ".[serve]"') from None
        import demask
        from demask.serving import serve
        from demask.serving.app import Limits

        if max_batch < 1 or max_n < 1:
            raise ValueError(f"--max-batch ({max_batch}) and --max-n ({max_n}) must be at least 1")
        if max_queued < max_batch:
            raise ValueError(f"--max-queued ({max_queued}) must be at least --max-batch ({max_batch})")
        llm = demask.load(model, dtype=dtype, device=device)
        typer.echo(f"serving {model} on http://{host}:{port}/v1 (batch <= {max_batch}; Ctrl-C stops after "
                   "the requests in flight)", err=True)  # fmt: skip
        serve(llm, host, port, Limits(max_rows=max_batch, max_n=max_n, max_queued_rows=max_queued))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
