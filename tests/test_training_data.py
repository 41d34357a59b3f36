"""SFT layout, pretraining chunks, data order, the learning-rate schedule, TrainConfig checks."""

from __future__ import annotations

import json
import os

import pytest
import torch

from demask.training.config import TrainConfig, lr_at
from demask.training.data import (
    SFTData,
    SFTExample,
    TokenChunks,
    chunk_documents,
    make_sft_example,
    source_files,
)
from demask.training.order import epoch_permutation, global_batch_indices, step_generator

E, P = 0, 2  # end and pad ids


def test_sft_example_appends_end_then_pad():
    ex = make_sft_example([5, 6], [7, 8], completion_length=5, end_token_id=E, pad_token_id=P)
    assert ex == SFTExample((5, 6), (7, 8, E, P, P), 3)
    exact = make_sft_example([5], [7, 8], completion_length=3, end_token_id=E, pad_token_id=P)
    assert exact.completion_ids == (7, 8, E) and exact.n_content == 3
    with pytest.raises(ValueError, match="does not fit the completion length 2"):
        make_sft_example([5], [7, 8], completion_length=2, end_token_id=E, pad_token_id=P)


def test_sft_batch_layout_left_pads_prompts():
    data = SFTData(
        [
            make_sft_example([5, 6, 7], [9], completion_length=4, end_token_id=E, pad_token_id=P),
            make_sft_example([8], [10, 11], completion_length=4, end_token_id=E, pad_token_id=P),
        ],
        P,
    )
    assert len(data) == 2 and data.width == 7
    b = data.batch(torch.tensor([0, 1]))
    assert b.input_ids.tolist() == [[5, 6, 7, 9, E, P, P], [P, P, 8, 10, 11, E, P]]
    assert b.attention_mask.int().tolist() == [[1] * 7, [0, 0, 1, 1, 1, 1, 1]]
    assert b.target_mask.int().tolist() == [[0, 0, 0, 1, 1, 1, 1]] * 2
    assert b.fill_mask.int().tolist() == [[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 1]]
    assert b.n_real_tokens() == 12
    # A batch of equal prompt lengths has no padding: no attention mask, columns trimmed.
    single = data.batch(torch.tensor([1]))
    assert single.input_ids.tolist() == [[8, 10, 11, E, P]] and single.attention_mask is None
    assert single.target_mask.int().tolist() == [[0, 1, 1, 1, 1]]


def test_sft_data_refuses_mixed_completion_lengths():
    a = make_sft_example([5], [9], completion_length=3, end_token_id=E, pad_token_id=P)
    b = make_sft_example([5], [9], completion_length=4, end_token_id=E, pad_token_id=P)
    with pytest.raises(ValueError, match="same \\(padded\\) length"):
        SFTData([a, b], P)


def test_chunks_and_pretraining_batches():
    chunks = chunk_documents([[1, 2], [3, 4, 5], [6, 7]], 3, separator_id=0)
    assert chunks.tolist() == [[1, 2, 0], [3, 4, 5], [0, 6, 7]]  # the last separator is dropped
    data = TokenChunks(chunks)
    b = data.batch(torch.tensor([1]))
    assert b.input_ids.tolist() == [[3, 4, 5]] and b.attention_mask is None
    assert b.target_mask.all() and not b.fill_mask.any()
    with pytest.raises(ValueError, match="fewer than one chunk"):
        chunk_documents([[1, 2]], 5, separator_id=None)


def test_source_files_are_sorted_and_filtered(tmp_path):
    for name in ("b.py", "a.py", "sub/c.py", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    found = source_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.py", "b.py", "sub/c.py"]
    assert len(source_files(tmp_path, ("*.py", "*.txt"), max_files=2)) == 2
    with pytest.raises(FileNotFoundError, match="no files matching"):
        source_files(tmp_path, ("*.rs",))
    with pytest.raises(FileNotFoundError, match="no folder"):
        source_files(tmp_path / "missing")


def test_stdlib_slice_tokenizes_into_chunks():
    from demask.model import train_bpe_tokenizer
    from demask.training.data import read_texts

    files = source_files(os.path.dirname(json.__file__), max_files=5)
    assert len(files) == 5
    texts = read_texts(files)
    tok = train_bpe_tokenizer(texts, 300)
    chunks = chunk_documents(tok.encode_batch(texts), 64, tok.eos_token_id)
    assert chunks.shape[1] == 64 and chunks.shape[0] > 10
    assert tok.decode(chunks[0].tolist()) == texts[0][: len(tok.decode(chunks[0].tolist()))]


# ------------------------------------------------------------------ order
def test_each_epoch_visits_every_example_once():
    seen = torch.cat([global_batch_indices(10, 3, seed=1, step=s) for s in range(3)])
    assert len(set(seen.tolist())) == 9  # 3 steps of 3 rows; the tenth example is dropped
    epoch0 = epoch_permutation(10, 1, 0)
    assert torch.equal(seen, epoch0[:9])
    assert torch.equal(global_batch_indices(10, 3, 1, 3), epoch_permutation(10, 1, 1)[:3])
    assert not torch.equal(epoch_permutation(10, 1, 1), epoch0)
    assert torch.equal(global_batch_indices(10, 3, 1, 2), global_batch_indices(10, 3, 1, 2))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        global_batch_indices(2, 3, 0, 0)


def test_step_generators_depend_on_seed_and_step_only():
    def draw(seed, step):
        return torch.rand(4, generator=step_generator(seed, step))

    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6))
    assert not torch.equal(draw(0, 5), draw(1, 5))


# ------------------------------------------------------------------ schedule and config
def test_learning_rate_schedule_values():
    kw = dict(lr=1.0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **kw) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(8.5, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway: 4 + 9 / 2
    assert lr_at(13, **kw) == pytest.approx(0.1)
    assert lr_at(40, **kw) == pytest.approx(0.1)


def test_train_config_rejects_bad_values_with_the_fix():
    with pytest.raises(ValueError, match="did you mean 'masked-diffusion'"):
        TrainConfig(objective="masked-difusion")
    with pytest.raises(ValueError, match="warmup_steps=20 must lie in \\[0, max_steps=10\\]"):
        TrainConfig(max_steps=10, warmup_steps=20)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="did you mean 'fsdp'"):
        TrainConfig(distributed="fsdpp")
    cfg = TrainConfig(global_batch_size=12, micro_batch_size=3)
    assert cfg.micro_batches(1) == (3, 4) and cfg.micro_batches(2) == (3, 2)
    with pytest.raises(ValueError, match="not a multiple of micro_batch_size=3"):
        TrainConfig(global_batch_size=8, micro_batch_size=3).micro_batches(1)
    with pytest.raises(ValueError, match="not divisible by the 5 processes"):
        cfg.micro_batches(5)
