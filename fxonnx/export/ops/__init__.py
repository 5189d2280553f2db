"""Lowering rules, one module per op family; importing this package registers them all."""

from . import (  # noqa: F401
    conv,
    elementwise,
    linear,
    norm,
    pool,
    reduce,
    shape,
)
