"""Suite-wide settings.

One torch thread: the suite's models are tiny, and on a 2-core machine shared with the
sandbox's worker processes, torch's default thread pool spends more time contending than
computing (a tiny-model `generate` measured 3.5 s at 2 threads vs 0.08 s at 1).
"""

import torch

torch.set_num_threads(1)
