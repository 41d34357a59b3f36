"""Which examples, and which noise, a step sees: pure functions of (seed, step).

Nothing about the data order is kept in memory between steps, so resuming at step k
replays exactly the batches an uninterrupted run would have seen, and two processes
splitting a global batch see the same rows and the same noise as one process would.

- each epoch is a permutation of the data drawn from ``seed`` and the epoch number;
- step k takes the k-th consecutive slice of ``global_batch_size`` rows of the epoch
  stream; an epoch's incomplete last batch is dropped (every step sees a full batch);
- the noise generator of step k is seeded from ``seed`` and k alone.

Not covered: sharded data sets where no single process can index every example.
"""

from __future__ import annotations

import functools

import torch

_NOISE_STREAM = 0x5EED_0F_D1FF  # keeps noise seeds apart from data-order seeds


def steps_per_epoch(n_examples: int, global_batch_size: int) -> int:
    if n_examples < global_batch_size:
        raise ValueError(
            f"the data set has {n_examples} examples, fewer than one global batch of "
            f"{global_batch_size}; lower global_batch_size or add data"
        )
    return n_examples // global_batch_size


def epoch_permutation(n_examples: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch ``epoch`` (a fresh generator per epoch: no state to restore).
    Cached, since every step of an epoch asks for it; callers must not modify it."""
    return _epoch_permutation(n_examples, seed, epoch)


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n_examples: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n_examples, generator=gen)


def global_batch_indices(n_examples: int, global_batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Indices (global_batch_size,) of the examples of step ``step`` (0-based)."""
    per_epoch = steps_per_epoch(n_examples, global_batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = epoch_permutation(n_examples, seed, epoch)
    return perm[k * global_batch_size : (k + 1) * global_batch_size]


def step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of step ``step``'s noise (mask rates, mask draws)."""
    return torch.Generator(device=device).manual_seed(_mix(seed ^ _NOISE_STREAM, step))


def _mix(seed: int, k: int) -> int:
    """A 63-bit seed from two integers (splitmix64 finaliser), so nearby (seed, k) pairs
    give unrelated streams."""
    z = (seed * 0x9E3779B97F4A7C15 + k + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF
