"""Analysis: runs → tidy DataFrame → fits, trend classes, spikes, style, figures, report.

Pure functions over arrays/DataFrames (fits, trends, spikes, report assembly); I/O at the edges
(load.py reads MLflow or files; plots.save and report.write_markdown write files).
"""

from .errors import AnalysisInputError, FitError
from .fits import ChinchillaFit, PowerFit, fit_chinchilla, fit_power
from .spikes import detect_spikes, emergence_flags
from .trends import Trend, classify

__all__ = [
    "AnalysisInputError",
    "FitError",
    "PowerFit",
    "ChinchillaFit",
    "fit_power",
    "fit_chinchilla",
    "detect_spikes",
    "emergence_flags",
    "Trend",
    "classify",
]
