"""An OpenAI-compatible HTTP server for one model: ``demask serve`` (FastAPI + uvicorn).

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (``suffix`` = fill-in-the-middle),
``POST /v1/chat/completions`` (the tokenizer's chat template). OpenAI's fields ``max_tokens``,
``temperature``, ``top_p``, ``n``, ``stop``, ``seed``, ``stream``; the diffusion decoder's as
extra body fields (``steps``, ``block_length``, ``policy``, ``policy_options``, ``cache``,
``top_k``), e.g. with the ``openai`` client ``extra_body={"policy": "threshold"}``.

``stream: true`` sends server-sent events with text deltas of the committed prefix (a
diffusion model commits out of order; a client sees text once everything before it is
committed). The extension ``demask_steps: true`` adds to each event the positions committed
at that forward pass and their tokens (``choices[i].demask_step``): the denoising itself.

Requests go through :class:`~demask.serving.batcher.Batcher`: concurrent requests with the
same decoding settings share forward passes. Errors are OpenAI-shaped JSON
(``{"error": {"message", "type", "param", "code"}}``) with 4xx codes and the messages the
CLI prints for the same mistake.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from demask.serving.batcher import Batcher, JobResult
from demask.serving.text import PrefixText, cut_at_stop


@dataclass
class Limits:
    max_rows: int = 32
    """Completions decoded together at most (the batch)."""
    max_n: int = 8
    max_prompts: int = 16
    """Prompts in one /v1/completions request."""
    max_stop: int = 4
    max_body_bytes: int = 1 << 20
    max_queued_rows: int = 1024
    batch_wait_ms: float = 0.0
    """How long the batcher waits for more requests before a decode (see Batcher)."""


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def error_response(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


# ---------------------------------------------------------------------- request bodies
class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    # OpenAI fields demask does not implement: accepted at their neutral values only
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    # the diffusion decoder's options (DecodeConfig fields)
    steps: int | None = None
    block_length: int | None = None
    policy: str | None = None
    policy_options: dict[str, Any] | None = None
    cache: str | None = None
    top_k: int | None = None
    demask_steps: bool = False
    """Stream the committed positions of every forward pass (``stream: true`` only)."""


class CompletionRequest(_Common):
    prompt: str | list[str]
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None


UNSUPPORTED = {
    "presence_penalty": 0.0, "frequency_penalty": 0.0, "logit_bias": None, "echo": False, "logprobs": None,
    "best_of": None,
}  # fmt: skip


def _refuse_unsupported(req: BaseModel) -> None:
    for name, neutral in UNSUPPORTED.items():
        value = getattr(req, name, neutral)
        if value not in (neutral, {}, False) and not (name == "best_of" and value == 1):
            raise APIError(400, f"{name}={value!r} is not supported by demask's server; leave it unset", name)


# ---------------------------------------------------------------------- the app
def create_app(llm: Any, limits: Limits | None = None, batcher: Batcher | None = None) -> FastAPI:
    """The server for ``llm`` (a :class:`demask.api.LLM`)."""
    limits = limits or Limits()
    batcher = batcher or Batcher(llm.model, limits.max_rows, limits.max_queued_rows, limits.batch_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.get_running_loop().run_in_executor(None, batcher.close)  # finish what was accepted

    app = FastAPI(title="demask", lifespan=lifespan)
    app.state.llm, app.state.batcher, app.state.limits = llm, batcher, limits
    created = int(time.time())

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            return error_response(413, f"request body of {size} bytes exceeds the server's {limits.max_body_bytes}")
        return await call_next(request)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        if first.get("type") == "extra_forbidden":
            message = f"unknown field {param!r}; see the server's /docs for the accepted fields"
        return error_response(400, message, param)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"{type(exc).__name__}: {exc} (unexpected: please report it)", None, "server_error")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": llm.name, "object": "model", "created": created,
                                            "owned_by": "demask"}]}  # fmt: skip

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts or len(prompts) > limits.max_prompts:
            raise APIError(400, f"prompt must hold 1 to {limits.max_prompts} strings, got {len(prompts)}", "prompt")
        if req.suffix is not None:
            return await _infill(req, prompts)
        return await _serve(req, prompts, "text_completion")

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> Any:
        messages = [m.model_dump() for m in req.messages]
        try:
            prompt = llm.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        except Exception as exc:  # no template, or the template refused the messages
            message = f"{exc}" if isinstance(exc, ValueError) else f"chat template: {exc}"
            raise APIError(400, message, "messages") from None
        if req.max_completion_tokens is not None:
            req.max_tokens = req.max_completion_tokens
        return await _serve(req, [prompt], "chat.completion")

    def _check(req: _Common) -> None:
        if req.model != llm.name:
            raise APIError(404, f"model {req.model!r} not found; this server serves {llm.name!r}", "model",
                           "not_found_error")  # fmt: skip
        _refuse_unsupported(req)

    async def _infill(req: CompletionRequest, prompts: list[str]) -> Any:
        """Fill-in-the-middle: each prompt is a prefix, ``suffix`` follows the middle; with
        max_tokens a middle of exactly that many tokens, without it the model's likeliest length."""
        _check(req)
        if req.stream:
            raise APIError(400, "stream is not available with suffix (fill-in-the-middle); send stream: false",
                           "stream")  # fmt: skip
        if len(prompts) != 1:
            raise APIError(400, f"fill-in-the-middle takes one prompt, got {len(prompts)}", "prompt")
        if req.n != 1:
            raise APIError(400, f"fill-in-the-middle takes n=1, got n={req.n}", "n")
        options = {k: getattr(req, k) for k in DECODE_FIELDS if getattr(req, k) is not None}
        suffix = req.suffix or ""
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])

        def run() -> str:
            return llm.infill(prompts[0], suffix, max_new_tokens=req.max_tokens, seed=req.seed, **options)

        try:
            future = batcher.call(run)
        except OverflowError as exc:
            raise APIError(429, str(exc), None, "server_busy") from None
        except RuntimeError as exc:
            raise APIError(503, str(exc), None, "server_unavailable") from None
        try:
            middle = await asyncio.wrap_future(future)
        except (ValueError, TypeError) as exc:
            raise APIError(400, str(exc)) from None
        text, stopped = cut_at_stop(middle, stop)
        used = len(llm.tokenizer.encode(middle)) if middle else 0
        prompt_tokens = len(llm.tokenizer.encode(prompts[0])) + len(llm.tokenizer.encode(suffix))
        return {"id": _id("text_completion"), "object": "text_completion", "created": int(time.time()),
                "model": llm.name,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop" if stopped else "length",
                             "logprobs": None}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                          "total_tokens": prompt_tokens + used}}  # fmt: skip

    async def _serve(req: _Common, prompts: list[str], kind: str) -> Any:
        _check(req)
        if req.n > limits.max_n:
            raise APIError(400, f"n={req.n} exceeds the server's limit of {limits.max_n}", "n")
        if len(prompts) * req.n > limits.max_rows:
            raise APIError(400, f"{len(prompts)} prompts x n={req.n} completions exceed the server's batch of "
                                f"{limits.max_rows}", "n")  # fmt: skip
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stop) > limits.max_stop:
            raise APIError(400, f"stop holds {len(stop)} strings, at most {limits.max_stop}", "stop")
        if req.demask_steps and not req.stream:
            raise APIError(400, "demask_steps streams the denoising: it needs stream: true", "demask_steps")
        plan = _plan(llm, req, prompts)
        if req.stream:
            stream = _Stream(asyncio.get_running_loop(), plan)
            try:
                stream.future = batcher.submit(plan.rows_in, plan.config, req.seed, stream.on_step)
            except OverflowError as exc:
                raise APIError(429, str(exc), None, "server_busy") from None
            except RuntimeError as exc:
                raise APIError(503, str(exc), None, "server_unavailable") from None
            return StreamingResponse(_stream(stream, req, kind, stop), media_type="text/event-stream")
        result = await _submit(plan, req.seed)
        choices = []
        for i, (_, completion) in enumerate(plan.rows(result)):
            text, reason = plan.finish(completion, stop)
            if kind == "chat.completion":
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": reason, "logprobs": None})  # fmt: skip
            else:
                choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": None})
        used = sum(len(c[: plan.max_tokens]) for c in result.completions)
        prompt_tokens = sum(len(e) for e in plan.encoded)
        return {"id": _id(kind), "object": kind, "created": int(time.time()), "model": llm.name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": used,
                          "total_tokens": prompt_tokens + used}}  # fmt: skip

    async def _submit(plan: _Plan, seed: int | None, on_step: Any = None) -> JobResult:
        try:
            future = batcher.submit(plan.rows_in, plan.config, seed, on_step)
        except OverflowError as exc:
            raise APIError(429, str(exc), None, "server_busy") from None
        except RuntimeError as exc:
            raise APIError(503, str(exc), None, "server_unavailable") from None
        try:
            return await asyncio.wrap_future(future)
        except ValueError as exc:
            raise APIError(400, str(exc)) from None

    async def _stream(stream: _Stream, req: _Common, kind: str, stop: list[str]) -> AsyncIterator[str]:
        plan, events, future = stream.plan, stream.events, stream.future
        texts = [PrefixText(llm.tokenizer, plan.max_tokens, plan.ends, stop) for _ in plan.rows_in]
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
        ident = _id(kind)

        def chunk(index: int, delta: str | None, reason: str | None = None, extra: dict | None = None,
                  role: bool = False) -> str:  # fmt: skip
            if kind == "chat.completion":
                said: dict[str, str] = {"role": "assistant"} if role else {}
                body: dict[str, Any] = {"index": index, "delta": said if delta is None else {**said, "content": delta}}
            else:
                body = {"index": index, "text": delta or ""}
            body["finish_reason"] = reason
            body["logprobs"] = None
            if extra:
                body.update(extra)
            payload = {"id": ident, "object": chunk_kind, "created": int(time.time()), "model": llm.name,
                       "choices": [body]}  # fmt: skip
            return f"data: {json.dumps(payload)}\n\n"

        future.add_done_callback(lambda f: stream.put(("done",)))
        try:
            if kind == "chat.completion":
                for i in range(len(plan.rows_in)):
                    yield chunk(i, "", role=True)
            while True:
                event = await events.get()
                if event[0] == "done":
                    break
                _, row, positions, tokens = event
                delta = texts[row].update(positions, tokens)
                extra = None
                if req.demask_steps:
                    pieces = [llm.tokenizer.decode([t], skip_special_tokens=False) for t in tokens]
                    extra = {"demask_step": {"positions": positions, "token_ids": tokens, "tokens": pieces}}
                if delta or extra:
                    yield chunk(row, delta, extra=extra)
            failure = future.exception()
            if failure is not None:
                message = str(failure) if isinstance(failure, ValueError) else f"{type(failure).__name__}: {failure}"
                yield _sse_error(message, "server_error")
                return
            result = future.result()
            for i, (_, completion) in enumerate(plan.rows(result)):
                text, reason = plan.finish(completion, stop)
                rest = texts[i].finish(text)
                yield chunk(i, (rest or None) if kind == "chat.completion" else rest, reason)
            if (req.stream_options or {}).get("include_usage"):
                used = sum(len(c[: plan.max_tokens]) for c in result.completions)
                prompt_tokens = sum(len(e) for e in plan.encoded)
                total = prompt_tokens + used
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": used, "total_tokens": total}
                payload = {"id": ident, "object": chunk_kind, "created": int(time.time()), "model": llm.name,
                           "choices": [], "usage": usage}  # fmt: skip
                yield f"data: {json.dumps(payload)}\n\n"
            yield "data: [DONE]\n\n"
        finally:  # the client went away (or the stream ended): stop feeding it
            if not future.done():
                batcher.abandon(future)

    return app


def _sse_error(message: str, kind: str) -> str:
    """An error after the stream's headers went out: one event with OpenAI's error object."""
    return "data: " + json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}) + "\n\n"


def _id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]


class _Stream:
    """A streamed request's events, fed from the decoding thread into the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, plan: _Plan) -> None:
        self.loop, self.plan = loop, plan
        self.events: asyncio.Queue = asyncio.Queue()
        self.future: Any = None

    def put(self, event: tuple) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def on_step(self, row: int, positions: list[int], tokens: list[int]) -> None:
        self.put(("step", row, positions, tokens))


# ---------------------------------------------------------------------- one request's decode
@dataclass
class _Plan:
    encoded: list[list[int]]
    rows_in: list[list[int]]
    """The prompt rows submitted (each prompt n times)."""
    n: int
    config: Any
    max_tokens: int
    tokenizer: Any
    ends: list[int]

    def rows(self, result: JobResult) -> list[tuple[int, list[int]]]:
        return [(i // self.n, c) for i, c in enumerate(result.completions)]

    def finish(self, completion: list[int], stop: list[str]) -> tuple[str, str]:
        """The choice's text and finish_reason: "stop" at an end token or a stop string,
        "length" when the completion used all of max_tokens."""
        tokens = completion[: self.max_tokens]
        text, stopped = cut_at_stop(self.tokenizer.decode(tokens), stop)
        ended = len(completion) < self.max_tokens
        return text, "stop" if stopped or ended else "length"


DECODE_FIELDS = ("temperature", "top_p", "top_k", "steps", "block_length", "policy", "policy_options", "cache")


def _plan(llm: Any, req: _Common, prompts: list[str]) -> _Plan:
    """Tokenise, check lengths and build the DecodeConfig (a wrong option is a 400 naming it)."""
    from demask.decoding.output import end_token_ids

    encoded = [llm.tokenizer.encode(p) for p in prompts]
    if any(len(e) == 0 for e in encoded):
        raise APIError(400, "prompt is empty: give at least one token of text", "prompt")
    options = {k: getattr(req, k) for k in DECODE_FIELDS if getattr(req, k) is not None}
    longest = max(len(e) for e in encoded)
    try:
        base = llm.decode_config(longest, **options)
        max_tokens = req.max_tokens or base.gen_length
        block = base.block_length or llm.config.block_size or 1
        canvas = math.ceil(max_tokens / block) * block  # decode whole blocks; the reply keeps max_tokens
        room = llm.context_length - longest
        if canvas > room:
            fits = room // block * block
            advice = f"pass max_tokens <= {fits} or a shorter prompt" if fits else "shorten the prompt"
            said = f"max_tokens={max_tokens}" if req.max_tokens else f"the default max_tokens={max_tokens}"
            raise APIError(
                400,
                f"a prompt of {longest} tokens plus {said} exceeds {llm.name}'s context of "
                f"{llm.context_length} tokens; {advice}",
                "max_tokens",
            )
        # the model's own decoder as it is (its steps too) unless the canvas changes
        config = base if canvas == base.gen_length else llm.decode_config(longest, **options, gen_length=canvas)
    except (ValueError, TypeError) as exc:
        raise APIError(400, str(exc)) from None
    rows_in = [e for e in encoded for _ in range(req.n)]
    return _Plan(encoded, rows_in, req.n, config, max_tokens, llm.tokenizer, end_token_ids(llm.config))
