"""The adapter from the decoding engine to the evaluation's :class:`Sampler` protocol.

What it uses of the decoding API (``demask.decoding.generate`` and its ``DecodeOutput``)::

    from demask.decoding import generate, DecodeConfig
    out = generate(model, prompt_ids: list[list[int]], config, generator=torch.Generator)
    out.completions: list[list[int]]   # token ids, cut at the end token
    out.nfe: list[int]                 # forward passes per row

Seeding: ``generate`` takes one generator per call. With ``batched=True`` (the default) one
call serves the whole batch, its generator seeded from all the rows' seeds: the batch is
reproducible as a whole, and a resumed evaluation reproduces it because it draws every
unfinished batch again whole, with the same prompts and seeds (record and replay, see
:mod:`demask.evaluation.runner`; the batch size must stay the same). With ``batched=False``
each prompt gets its own call and generator, so each sample depends only on its own seed
(slower on a GPU).

Not covered: chat templates (prompts are encoded as they are, without special tokens).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from demask.evaluation.samples import SampleOutput, Sampler


def _combined_seed(seeds: list[int]) -> int:
    key = ",".join(str(s) for s in seeds).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def _device_of(model: Any):
    import torch

    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def decoding_sampler(
    model: Any,
    tokenizer: Any,
    decode_config: Any,
    *,
    batched: bool = True,
    observe: Callable[[Any], None] | None = None,
) -> Sampler:
    """A sampler that decodes with ``demask.decoding.generate`` (imported on first call).

    observe: called with each ``DecodeOutput`` (e.g. to read its trace for AR-ness).
    """

    def sample(prompts: list[str], seeds: list[int]) -> list[SampleOutput]:
        import torch

        from demask.decoding import generate

        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per prompt")
        device = _device_of(model)
        groups = [list(range(len(prompts)))] if batched else [[i] for i in range(len(prompts))]
        outputs: list[SampleOutput | None] = [None] * len(prompts)
        for rows in groups:
            start = time.perf_counter()
            generator = torch.Generator(device=device)
            generator.manual_seed(_combined_seed([seeds[i] for i in rows]) if batched else seeds[rows[0]])
            out = generate(model, [tokenizer.encode(prompts[i]) for i in rows], decode_config, generator=generator)
            share = (time.perf_counter() - start) / len(rows)
            if observe is not None:
                observe(out)
            for j, i in enumerate(rows):
                ids = list(out.completions[j])
                outputs[i] = SampleOutput(
                    completion=tokenizer.decode(ids), nfe=int(out.nfe[j]), num_tokens=len(ids), seconds=share
                )
        return outputs  # type: ignore[return-value]

    return sample
