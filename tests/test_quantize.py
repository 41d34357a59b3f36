"""int8 CPU inference: which layers are quantized, and that greedy decoding stays close to fp32."""

from __future__ import annotations

import pytest
import torch

import demask
from demask.model.quantize import is_int8, weights_bytes
from demask.tasks import load_tasks


@pytest.fixture(scope="module")
def pair():
    return demask.load("tinycode-mdm", dtype="float32"), demask.load("tinycode-mdm", dtype="int8")


def test_block_linears_are_int8_and_the_head_stays_fp32(pair):
    fp, q = pair
    kinds = {type(m).__module__ for m in q.model.model.modules() if "Linear" in type(m).__name__}
    assert kinds and all("quantized" in k for k in kinds)
    assert isinstance(q.model.lm_head, torch.nn.Linear) and q.model.lm_head.weight.dtype == torch.float32
    assert weights_bytes(q.model) < 0.5 * weights_bytes(fp.model)


def test_int8_greedy_decoding_is_close_to_fp32(pair):
    fp, q = pair
    prompts = [t.prompt for t in load_tasks("tinycode:validation")[:16]]
    same = sum(a == b for a, b in zip(fp.generate(prompts), q.generate(prompts)))
    # measured 63 of 64 on the first 64 validation prompts (docs/performance.md)
    assert same >= 12, f"only {same} of 16 greedy completions equal fp32's"


def test_int8_names_and_errors():
    assert is_int8("int8") and is_int8("qint8") and not is_int8("float32") and not is_int8(torch.float32)
    with pytest.raises(ValueError, match="int8"):
        demask.load("tinycode-mdm", dtype="float8")


def test_int8_is_for_inference_only(pair, tmp_path):
    from demask.model.checkpoint import save_pretrained
    from demask.training.config import TrainConfig
    from demask.training.updates import UpdateLoop

    _, q = pair
    with pytest.raises(ValueError, match="not saved"):
        save_pretrained(q.model, tmp_path / "x")
    with pytest.raises(ValueError, match="cannot be trained"):
        UpdateLoop(TrainConfig(out_dir=str(tmp_path / "run")), q.model, log_name="log.csv")
    with pytest.raises(ValueError, match="CPU"):
        demask.load("tinycode-mdm", dtype="int8", device="meta")
