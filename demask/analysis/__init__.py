"""Looking inside decoding: AR-ness of decoding orders, first-step confidence profiles."""

from demask.analysis.arness import (
    commit_order,
    first_step_profile,
    first_step_rows,
    global_arness,
    local_arness,
    position_profile,
    trace_arness,
)

__all__ = [
    "commit_order",
    "first_step_profile",
    "first_step_rows",
    "global_arness",
    "local_arness",
    "position_profile",
    "trace_arness",
]
