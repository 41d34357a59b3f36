"""Serving a model: an OpenAI-compatible HTTP server (``demask serve``) over a request batcher.

    from demask.serving import create_app, Limits     # FastAPI app for a demask.LLM
    from demask.serving.batcher import Batcher         # the batching decoder alone

Needs the ``serve`` extra (``pip install -e ".[serve]"``: fastapi, uvicorn).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Limits", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("Limits", "create_app"):
        from demask.serving import app

        return getattr(app, name)
    raise AttributeError(name)


def serve(llm: Any, host: str = "127.0.0.1", port: int = 8000, limits: Any = None, log_level: str = "info") -> None:
    """Serve ``llm`` until SIGINT/SIGTERM; requests in flight finish first (graceful shutdown)."""
    import uvicorn

    from demask.serving.app import create_app

    uvicorn.run(create_app(llm, limits), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30)
