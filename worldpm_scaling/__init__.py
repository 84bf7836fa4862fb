"""worldpm_scaling: scaling-law experiments on Bradley–Terry preference models (WorldPM, arXiv 2505.10527)."""

__version__ = "0.1.0"
