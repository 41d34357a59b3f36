"""`demask serve` through the official openai client on loopback: every endpoint, streaming,
the denoising extension, errors for each validated field, and batching that changes nothing."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

import demask  # noqa: E402
from demask.serving.app import Limits, create_app  # noqa: E402
from demask.serving.batcher import Batcher  # noqa: E402
from demask.serving.text import PrefixText  # noqa: E402

PROMPTS = [  # TinyCode's prompt form, which the shipped models complete
    'def process_value(n):\n    """Add 9.\n    Multiply it by 4 when it is below 0.\n    Return whether it is a '
    'multiple of 4.\n    >>> process_value(59)\n    True\n    """\n',
    'def handle_value(n):\n    """Increase it by 2.\n    If it is negative, multiply it by 2.\n    Return whether '
    'it is divisible by 4.\n    >>> handle_value(-4)\n    True\n    """\n',
    'def scale(n):\n    """Subtract 3.\n    Return it times 2.\n    >>> scale(5)\n    4\n    """\n',
]
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def post(url: str, body: dict) -> tuple[int, str]:
    """A raw POST (the status and body text), for what the openai client does not send."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    def __init__(self, llm, limits: Limits) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app(llm, limits)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="-", max_retries=0)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def llm():
    model = demask.load("tinycode-mdm")
    model.tokenizer.chat_template = TEMPLATE  # the shipped model is not a chat model
    yield model
    model.tokenizer.chat_template = None


@pytest.fixture(scope="module")
def server(llm):
    s = Server(llm, Limits(max_rows=16, max_n=4, max_body_bytes=8192))
    yield s
    s.stop()


def test_models_lists_the_served_model(server):
    assert [m.id for m in server.client.models.list().data] == ["tinycode-mdm"]


def test_completion_equals_the_facade(server, llm):
    out = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[0], max_tokens=48)
    assert out.choices[0].text == llm.generate(PROMPTS[0], max_new_tokens=48)
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens == len(llm.tokenizer.encode(PROMPTS[0]))


def test_several_prompts_n_and_diffusion_options(server):
    out = server.client.completions.create(
        model="tinycode-mdm", prompt=PROMPTS[:2], n=2, max_tokens=16, temperature=0.8, seed=3,
        extra_body={"policy": "confidence", "block_length": 8, "cache": "dual"},
    )  # fmt: skip
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert all(isinstance(c.text, str) for c in out.choices)


def test_max_tokens_not_a_block_multiple_is_cut_to_it(server, llm):
    out = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[1], max_tokens=5)
    assert len(llm.tokenizer.encode(out.choices[0].text)) <= 5


def test_stop_strings_cut_the_text(server):
    full = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[0], max_tokens=48)
    text = full.choices[0].text
    assert len(text) > 4
    stop = text[2:4]
    cut = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[0], max_tokens=48, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_chat_completion_through_the_template(server, llm):
    out = server.client.chat.completions.create(
        model="tinycode-mdm", messages=[{"role": "user", "content": PROMPTS[2]}], max_tokens=48
    )
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == llm.generate(PROMPTS[2], max_new_tokens=48)


def test_stream_deltas_add_up_to_the_completion(server):
    whole = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[1], max_tokens=48)
    parts, reasons = [], []
    for event in server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[1], max_tokens=48,
                                                   stream=True):  # fmt: skip
        parts.append(event.choices[0].text)
        reasons.append(event.choices[0].finish_reason)
    assert "".join(parts) == whole.choices[0].text
    assert len([p for p in parts if p]) > 1, "the text arrives in pieces, as it is committed"
    assert reasons[-1] in ("stop", "length")


def test_chat_stream_with_usage(server, llm):
    parts, usage = [], None
    for event in server.client.chat.completions.create(
        model="tinycode-mdm", messages=[{"role": "user", "content": PROMPTS[0]}], max_tokens=48, stream=True,
        stream_options={"include_usage": True},
    ):  # fmt: skip
        if event.choices:
            parts.append(event.choices[0].delta.content or "")
        else:
            usage = event.usage
    assert "".join(parts) == llm.generate(PROMPTS[0], max_new_tokens=48)
    assert usage is not None and usage.prompt_tokens == len(llm.tokenizer.encode(PROMPTS[0]))


def test_a_client_leaving_mid_stream_does_not_break_the_server(server):
    stream = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[0], max_tokens=48, stream=True)
    next(iter(stream))
    stream.close()
    out = server.client.completions.create(model="tinycode-mdm", prompt=PROMPTS[1], max_tokens=48)
    assert out.choices[0].finish_reason in ("stop", "length")


def test_denoising_steps_extension_streams_every_commit(server):
    body = {"model": "tinycode-mdm", "prompt": PROMPTS[0], "max_tokens": 16, "stream": True, "demask_steps": True,
            "block_length": 16, "policy": "confidence", "cache": "none"}  # fmt: skip
    status, text = post(f"{server.client.base_url}completions", body)
    assert status == 200
    committed: list[int] = []
    for line in text.splitlines():
        if line.startswith("data: {"):
            choice = json.loads(line[6:])["choices"][0]
            if "demask_step" in choice:
                committed += choice["demask_step"]["positions"]
    # one token per step until the early stop fills the rest: positions never repeat
    assert committed and len(committed) == len(set(committed)) and max(committed) < 16


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 9}, "limit of 4"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 500}, "context"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"policy": "confidnce"}, "confidence"),
        ({"block_length": 7, "max_tokens": 16}, "block_length"),
        ({"logprobs": 2}, "not supported"),
        ({"flavour": "x"}, "unknown field"),
        ({"demask_steps": True}, "stream: true"),
        ({"prompt": ""}, "empty"),
        ({"prompt": ["x"] * 17}, "1 to 16"),
        ({"seed": 2**64}, "seed"),
    ],
)
def test_bad_requests_are_openai_shaped_4xx(server, fields, needle):
    body = {"model": "tinycode-mdm", "prompt": PROMPTS[0], "max_tokens": 16, **fields}
    status, text = post(f"{server.client.base_url}completions", body)
    assert status == 400, text
    error = json.loads(text)["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # and the client raises its own error type
        server.client.completions.create(
            **{k: v for k, v in body.items() if k in ("model", "prompt")},
            extra_body={k: v for k, v in body.items() if k not in ("model", "prompt")},
        )


def test_unknown_model_is_404_and_big_body_413(server):
    with pytest.raises(openai.NotFoundError, match="tinycode-mdm"):
        server.client.completions.create(model="gpt-4", prompt="x", max_tokens=8)
    status, text = post(f"{server.client.base_url}completions", {"model": "tinycode-mdm", "prompt": "x" * 9000})
    assert status == 413 and "8192" in json.loads(text)["error"]["message"]


def test_chat_without_a_template_is_a_clear_error(llm):
    llm.tokenizer.chat_template = None
    s = Server(llm, Limits())
    try:
        with pytest.raises(openai.BadRequestError, match="chat template"):
            s.client.chat.completions.create(model="tinycode-mdm", messages=[{"role": "user", "content": "x"}])
    finally:
        s.stop()
        llm.tokenizer.chat_template = TEMPLATE


def test_concurrent_requests_share_decodes_and_match_one_at_a_time(llm):
    """8 clients at once: every request answered once, with the greedy text it gets alone,
    in fewer decodes than requests."""
    s = Server(llm, Limits(max_rows=16))
    try:
        alone = [llm.generate(p, max_new_tokens=48) for p in PROMPTS]
        jobs = [PROMPTS[i % 3] for i in range(8)]
        before = s.app.state.batcher.batches

        def ask(prompt: str) -> str:
            return s.client.completions.create(model="tinycode-mdm", prompt=prompt, max_tokens=48).choices[0].text

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(ask, jobs))
        assert got == [alone[i % 3] for i in range(8)]
        assert s.app.state.batcher.batches - before < 8
    finally:
        s.stop()


def test_batcher_groups_only_compatible_jobs(llm):
    from demask.decoding import DecodeConfig

    b = Batcher(llm.model, max_rows=8)
    try:
        greedy = DecodeConfig(gen_length=16)
        other = DecodeConfig(gen_length=16, policy="threshold")
        sampled = DecodeConfig(gen_length=16, temperature=1.0)
        ids = llm.tokenizer.encode(PROMPTS[0])
        futures = [b.submit([ids], c, seed=s) for c, s in ((greedy, 1), (greedy, 2), (other, 1), (sampled, 5),
                                                           (sampled, 5))]  # fmt: skip
        rows = [f.result(60).batch_rows for f in futures]
        # the first job may run alone before the rest queue; greedy seeds do not split a batch;
        # sampled jobs with a seed always run alone
        assert rows[3] == rows[4] == 1 and rows[2] == 1
        assert futures[3].result().completions == futures[4].result().completions
    finally:
        b.close()


def test_prefix_text_holds_back_until_the_prefix_is_committed(llm):
    tok = llm.tokenizer
    ids = tok.encode("return a + b")
    pt = PrefixText(tok, len(ids) + 2, ends=[tok.eos_token_id or 0])
    assert pt.update([len(ids) - 1], [ids[-1]]) == ""  # a later position: nothing to send yet
    sent = pt.update(list(range(len(ids) - 1)), ids[:-1])
    assert sent == tok.decode(ids[:-1])  # the last token is held back: it may merge with the next
    sent += pt.update([len(ids)], [tok.eos_token_id or 0])  # an end token closes the prefix
    assert sent == tok.decode(ids)
    assert pt.finish(tok.decode(ids)) == ""


def test_fill_in_the_middle_through_suffix(server, llm):
    prefix, suffix = PROMPTS[2] + "    n = n - 3\n", "    return n\n"
    out = server.client.completions.create(model="tinycode-mdm", prompt=prefix, suffix=suffix, max_tokens=6)
    assert out.choices[0].text == llm.infill(prefix, suffix, max_new_tokens=6)
    with pytest.raises(openai.BadRequestError, match="stream"):
        server.client.completions.create(model="tinycode-mdm", prompt=prefix, suffix=suffix, stream=True)
    with pytest.raises(openai.BadRequestError, match="context"):
        server.client.completions.create(model="tinycode-mdm", prompt=prefix, suffix=suffix, max_tokens=400)


def test_batcher_waits_to_gather_and_abandons_queued_jobs(llm):
    from demask.decoding import DecodeConfig

    ids = llm.tokenizer.encode(PROMPTS[0])
    config = DecodeConfig(gen_length=8)
    b = Batcher(llm.model, max_rows=8, wait_ms=300)
    try:
        futures = [b.submit([ids], config) for _ in range(3)]  # sent within the wait: one decode
        assert [f.result(60).batch_rows for f in futures] == [3, 3, 3]
        blocker = b.call(lambda: __import__("time").sleep(0.3))  # holds the thread
        queued = b.submit([ids], config)
        Batcher.abandon(queued)
        blocker.result(10)
        assert queued.cancelled()
        with pytest.raises(ValueError, match="wait_ms"):
            Batcher(llm.model, wait_ms=-1)
    finally:
        b.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        b.submit([ids], config)
