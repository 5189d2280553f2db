"""Optimization passes over the captured ATen graph (see ``_infra`` for the contract).

Every pass module registers its pass by name; ``DEFAULT`` is the compiler's pipeline.
"""

from . import (  # noqa: F401  (importing registers the passes)
    const_fold,
    cse,
    dce,
    dedup_weights,
    fold_bn,
    fusions,
    linear_chain,
    linear_nd,
    matmul_bias,
    noops,
    norms,
    prune,
    prune_zero,
    scalar_fold,
    transpose,
    views,
)
from ._infra import (
    Pass,
    PassContext,
    PassResult,
    Pipeline,
    available_passes,
    get_pass,
    register,
    structural_hash,
    unregister,
)
from ._run import DEFAULT, GraphReference, copy_captured, resolve, run_passes

__all__ = [
    "DEFAULT",
    "GraphReference",
    "Pass",
    "PassContext",
    "PassResult",
    "Pipeline",
    "available_passes",
    "copy_captured",
    "get_pass",
    "register",
    "resolve",
    "run_passes",
    "structural_hash",
    "unregister",
]
