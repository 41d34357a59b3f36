"""demask: masked-diffusion language models for code."""

__version__ = "0.1.0"
