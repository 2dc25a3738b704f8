"""Data layer: synthetic demo market, J-Quants build, validation, dense panel, splits.

CLI: `python -m atft_core.data {demo,build,check,fetch}`; see docs/data.md.
"""

from .build import BuildParams, build_dataset
from .demo import make_demo
from .errors import DataError
from .panel import Panel, estimate_panel_bytes, load_panel
from .splits import Splits, make_splits
from .validate import DatasetSummary, validate_dataset

__all__ = [
    "BuildParams", "DataError", "DatasetSummary", "Panel", "Splits", "build_dataset", "estimate_panel_bytes",
    "load_panel", "make_demo", "make_splits", "validate_dataset",
]
