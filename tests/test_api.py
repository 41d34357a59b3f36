"""The facade: demask.load and LLM on the shipped models, streaming, chat templates."""

from __future__ import annotations

import pytest

import demask
from demask.tasks import load_tasks

PROMPTS = [t.prompt for t in load_tasks("tinycode:test")[:2]]


@pytest.fixture(scope="module")
def block():
    return demask.load("tinycode-block")


def test_text_in_text_out_single_and_batch(block):
    one = block.generate(PROMPTS[0])
    assert isinstance(one, str) and one.strip()
    both = block.generate(PROMPTS)
    assert isinstance(both, list) and len(both) == 2 and both[0] == one  # greedy: batch-independent here
    assert block.generate(PROMPTS[0], temperature=1.0, seed=3) == block.generate(PROMPTS[0], temperature=1.0, seed=3)


def test_options_are_decode_config_fields_and_a_typo_is_named(block):
    assert block.generate(PROMPTS[0], policy="confidence", max_new_tokens=48, block_length=8).strip()
    with pytest.raises((TypeError, ValueError), match="temprature|temperature"):
        block.generate(PROMPTS[0], temprature=0.5)


def test_bad_inputs_are_clear_errors(block):
    with pytest.raises(TypeError, match="a str or a non-empty list of str, got int"):
        block.generate(42)
    with pytest.raises(TypeError, match="with other items"):
        block.generate([PROMPTS[0], 7])
    too_long = block.tokenizer.decode(block.tokenizer.encode(PROMPTS[0] * 4)[:130])  # fits alone, not with 48 more
    with pytest.raises(ValueError, match="more than the model.s context of 160 .* pass max_new_tokens"):
        block.generate(too_long)
    with pytest.raises(ValueError, match="it alone fills the context"):
        block.generate(PROMPTS[0] * 4)
    with pytest.raises(TypeError, match="load takes a model name"):
        demask.load(3)


def test_stream_shows_the_denoising_and_ends_with_the_generated_text(block):
    states = list(block.stream(PROMPTS[0]))
    assert states[-1].done and states[-1].final == block.generate(PROMPTS[0])
    steps = [s for s in states if not s.done]
    assert len(steps) >= 2 and all(s.committed for s in steps)
    assert demask.api.MASK_GLYPH in steps[0].text  # the first step leaves positions masked
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))


def test_autoregressive_models_use_the_same_facade():
    ar = demask.load("tinycode-ar")
    assert ar.generate(PROMPTS[0]).strip()
    states = list(ar.stream(PROMPTS[0]))
    assert all(len(s.committed) == 1 for s in states if not s.done)  # one token a step, left to right


def test_chat_template_renders_messages(block):
    tok = block.tokenizer
    with pytest.raises(ValueError, match="no chat template"):
        block.chat([{"role": "user", "content": "hi"}])
    tok.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "def f(x):"}])
        assert text == "<user>def f(x):\n<assistant>"
        with pytest.raises(ValueError, match="list of"):
            tok.apply_chat_template("hi")
    finally:
        tok.chat_template = None
