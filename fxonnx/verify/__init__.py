"""Output (and gradient) checks against eager PyTorch, with explicit tolerances per dtype."""

from ._compare import TOLERANCES, compare, compare_all, tolerance
from ._report import Check, Report
from ._verify import resize_inputs, resize_to, second_sizes, symbols_of, verify

__all__ = [
    "TOLERANCES",
    "Check",
    "Report",
    "compare",
    "compare_all",
    "resize_inputs",
    "resize_to",
    "second_sizes",
    "symbols_of",
    "tolerance",
    "verify",
]
