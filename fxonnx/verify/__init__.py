"""Output (and gradient) checks against eager PyTorch, with explicit tolerances per dtype."""

from ._compare import TOLERANCES, compare, compare_all, tolerance
from ._report import Check, Report
from ._verify import resize_batch, second_batch, verify

__all__ = [
    "TOLERANCES",
    "Check",
    "Report",
    "compare",
    "compare_all",
    "resize_batch",
    "second_batch",
    "tolerance",
    "verify",
]
