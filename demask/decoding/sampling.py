"""Token choice: the value a masked position would take if it were committed now.

Order of operations (Dream/DiffuCoder): logits / temperature (in float64, whatever the
model's dtype), then top-k, then top-p, then ``probs = softmax`` (float32). The policies'
confidence scores are read from these same ``probs``, so temperature and top-p change the
decoding order as well as the tokens. LLaDA instead
scores with the untempered softmax; that variant is not offered.

Sampling (temperature > 0) is Gumbel-max in float64, ``argmax(logits / T + G)``,
``G = -log(-log U)``, which draws exactly from the tempered categorical; low-precision
Gumbel noise degrades quality (arXiv 2409.02908). The uniforms come from an explicit
``torch.Generator`` on its own device and are moved to the logits' device, so a CPU
generator gives the same draws whatever device the model runs on.
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Set to -inf every token outside the top-k and outside the nucleus of mass top_p.

    logits: (..., V). The nucleus keeps the smallest set of most likely tokens whose mass
    reaches top_p (the token that crosses it is kept), so at least one token survives.
    Tokens tied with the k-th largest logit are kept too.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.float().softmax(-1).cumsum(-1)
        drop_sorted = cum > top_p
        drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()  # keep the token that crosses top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel_noise(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise in float64, drawn on the generator's device."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=gen_device)
    return (-torch.log(-torch.log(u))).to(device)


def choose_tokens(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick a token per position and return it with the distribution it came from.

    logits: (..., V) aligned with the positions they predict.
    Returns tokens (...) long and probs (..., V) float32: softmax of the tempered, filtered
    logits (untempered when temperature is 0, where tokens are the argmax).
    """
    if temperature > 0:
        # in float64, as LLaDA does: bf16 logits divided in bf16 shift the probabilities
        logits = logits.double() / temperature
    logits = filter_logits(logits, top_p, top_k)
    probs = logits.float().softmax(-1)  # (..., V)
    if temperature > 0:
        tokens = (logits.double() + gumbel_noise(logits.shape, generator, logits.device)).argmax(-1)
    else:
        tokens = logits.argmax(-1)
    return tokens, probs
