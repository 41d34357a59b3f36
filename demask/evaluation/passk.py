"""pass@k: the unbiased estimator of Chen et al. 2021 (arXiv:2107.03374, section 2.1).

For n samples of which c pass, the probability that at least one of k samples drawn without
replacement passes is ``1 - C(n - c, k) / C(n, k)``, computed in the numerically stable
product form ``1 - prod_{i = n-c+1}^{n} (1 - k / i)`` (no huge binomials); it is exactly 1
when ``n - c < k``. The "any of the first k passed" shortcut is biased and not offered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` of them passing.

    >>> pass_at_k(5, 2, 2)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"pass_at_k: {name} must be an int, got {value!r}")
    if k < 1:
        raise ValueError(f"pass_at_k: k={k} must be >= 1")
    if n < 0 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(
            f"pass_at_k: k={k} is larger than the number of samples n={n}; "
            f"draw at least k samples per problem or report a smaller k"
        )
    if n - c < k:
        return 1.0
    fail = math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
    return 1.0 - fail


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float | None:
    """Mean pass@k over problems given ``(n, c)`` each; None if some problem has n < k."""
    if not counts or any(n < k for n, _ in counts):
        return None
    return math.fsum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def pass_at_k_totals(counts: Sequence[tuple[int, int]], ks: Iterable[int] = (1, 10, 100)) -> dict[str, float]:
    """``{"pass@k": mean}`` for each k that every problem has enough samples for."""
    out: dict[str, float] = {}
    for k in ks:
        value = mean_pass_at_k(counts, k)
        if value is not None:
            out[f"pass@{k}"] = value
    return out
