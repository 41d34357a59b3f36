"""`demask view`: a local web page that replays a decode (docs/viewer.md).

The page (one HTML file with its script and style inline: no CDN, works offline) shows the
completion's positions as tiles; a step slider (and a play button) reveals the tokens in
the order they were committed, each tile coloured by the confidence of its token when it
was committed (red: unsure, green: sure) and numbered with its commit step, so the order is
readable from a still picture; an NFE counter follows the slider. A form runs a new decode
(prompt, model, policy, temperature, block length, length) through the JSON API:

- ``GET /api/models``: the models this viewer can decode with, and the policy names;
- ``POST /api/decode`` ``{"prompt", "model", "policy", "temperature", "block_length",
  "gen_length", "seed"}``: the trace as JSON (:func:`trace_json`);
- ``GET /api/replay``: the trace given with ``--replay FILE`` (404 without one).

Query parameters run a decode when the page opens (``?prompt=...&model=...&auto=1``) and
pick the step shown (``&step=last``), which is how the browser test takes its screenshot.
Served by FastAPI + uvicorn, as ``demask serve``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

PAGE = Path(__file__).with_name("page.html")


def trace_json(llm: Any, prompt: str, name: str = "", seed: int = 0, **options: Any) -> dict[str, Any]:
    """Decode ``prompt`` with ``llm`` (a demask.LLM) and describe the decode for the page:
    per completion position its token text, id, commit step (-1: filled by the early stop)
    and confidence; per step the positions it committed and the NFE so far."""
    encoded = llm.tokenizer.encode(prompt)
    if not encoded:
        raise ValueError("the prompt is empty: write at least one token")
    config = llm.decode_config(len(encoded), **options).replace(trace=True)
    out = llm.decode([encoded], config, seed=seed)
    length = config.gen_length
    ids = out.tokens[0, out.prompt_length : out.prompt_length + length].tolist()
    row = out.trace.row(0) if out.trace is not None else None
    step_of: list[int] = [-1] * length
    conf: list[float | None] = [None] * length
    steps = []
    for s, st in enumerate(row.steps if row is not None else []):
        for p, c in zip(st.positions, st.confidences):
            step_of[p], conf[p] = s, round(float(c), 4)
        steps.append({"nfe": st.nfe, "positions": list(st.positions)})
    pieces = [llm.tokenizer.decode([t], skip_special_tokens=False) for t in ids]
    return {
        "model": name,
        "prompt": prompt,
        "decode": {k: v for k, v in dataclasses.asdict(config).items() if k != "trace" and _plain(v)},
        "gen_length": length,
        "token_ids": ids,
        "tokens": pieces,
        "commit_step": step_of,
        "confidence": conf,
        "steps": steps,
        "stopped_at": None if row is None else row.stopped_at,
        "nfe": int(out.nfe[0]),
        "completion": llm.tokenizer.decode(out.completions[0]),
    }


def _plain(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=20_000)
    model: str | None = None
    policy: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    block_length: int | None = Field(None, ge=1)
    gen_length: int | None = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0, lt=2**63)


def create_viewer_app(
    models: dict[str, Callable[[], Any]], replay: dict[str, Any] | None = None, default: str | None = None
) -> FastAPI:
    """The viewer for ``models`` (name -> a function returning a loaded demask.LLM, called on
    first use); ``replay``: a trace shown when the page opens."""
    from demask.decoding.policies import POLICIES

    if not models:
        raise ValueError("the viewer needs at least one model")
    app = FastAPI(title="demask view")
    loaded: dict[str, Any] = {}
    lock = threading.Lock()  # one decode at a time: the model is not shared across threads
    first = default or next(iter(models))

    def llm_for(name: str) -> Any:
        with lock:
            if name not in loaded:
                loaded[name] = models[name]()
            return loaded[name]

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/api/models")
    def list_models() -> dict[str, Any]:
        names = sorted(n for n in POLICIES.names() if n != "learned")
        return {"models": list(models), "default": first, "policies": names}

    @app.get("/api/replay")
    def get_replay() -> Any:
        if replay is None:
            return JSONResponse({"error": "no trace to replay: start demask view with --replay FILE"}, 404)
        return replay

    @app.post("/api/decode")
    def decode(req: DecodeRequest) -> Any:
        name = req.model or first
        if name not in models:
            return JSONResponse({"error": f"unknown model {name!r}; this viewer has {sorted(models)}"}, 400)
        options: dict[str, Any] = {}
        for key in ("policy", "temperature", "block_length", "gen_length"):
            value = getattr(req, key)
            if value is not None:
                options[key] = value
        try:
            llm = llm_for(name)
            with lock:
                return trace_json(llm, req.prompt, name, seed=req.seed, **options)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)

    return app


def load_replay(path: str | Path) -> dict[str, Any]:
    """A trace written by the viewer (``trace_json``), checked for the fields the page reads."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    missing = [k for k in ("tokens", "commit_step", "confidence", "steps", "gen_length") if k not in data]
    if missing:
        raise ValueError(f"{path} is not a demask view trace: it lacks {missing} (write one with POST /api/decode)")
    return data
