"""demask: masked-diffusion language models for code.

import demask
llm = demask.load("tinycode-block")      # see demask.api
print(llm.generate(prompt))
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["LLM", "load"]


def __getattr__(name: str) -> Any:  # PEP 562: `import demask` stays light (no torch)
    if name in ("load", "LLM", "StreamState"):
        from demask import api

        return getattr(api, name)
    raise AttributeError(f"module 'demask' has no attribute {name!r}")
