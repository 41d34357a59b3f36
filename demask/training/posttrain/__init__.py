"""Post-training on one framework: the algorithm protocol (:mod:`.algorithm`), online rounds
(:func:`.rounds.collect_round`), the shared update skeleton
(:class:`demask.training.updates.UpdateLoop`), and RRTF/RRHF on ranked responses
(:mod:`.ranking`, :mod:`.scores`, the offline stages in :mod:`.rrtf`). GRPO
(:mod:`demask.training.rl.grpo`) is the online algorithm on the same framework.
"""

from demask.training.posttrain.algorithm import ALGORITHMS, Algorithm, check_requirements

__all__ = ["ALGORITHMS", "Algorithm", "check_requirements"]
