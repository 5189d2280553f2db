"""Optimization passes over the captured ATen graph, before lowering.

``run_passes(captured, passes="default", skip=(), verify_each=False, example_inputs=(),
prune=None)`` optimizes a copy of a Captured and returns it with one stats dict per pass;
``compile``/``export`` call it (``passes=``, ``skip=``, ``prune=``; ``compile`` also takes
``verify="each-pass"``).
A pass is a ``Pass`` subclass with a ``name`` and ``run(ctx: PassContext) -> PassResult``
(``_infra``); ``register`` makes it available by name, ``DEFAULT`` is the compiler's pipeline.

Cleanup: ``dce``, ``noops``, ``views``, ``transpose``, ``cse``, ``const_fold``,
``dedup_weights``, ``known_values`` (masks made trivial by values that follow from shapes),
``select_early`` (an output's picked rows computed before the row-wise layers, not after),
``stack_select_grads`` (the gradients of every part of a ``select`` split, stacked instead of
padded and summed). Fusion (as graph ops on the original parameters, baked by ``const_fold``):
``fold_bn``, ``linear_chain``, ``linear_nd``, ``matmul_bias``, ``scalar_fold``, ``fuse_gelu``,
``fuse_layer_norm`` (LayerNorm and RMSNorm), ``fuse_attention``, ``qkv_heads`` (a packed
QKV projection split into heads with one transpose); after lowering, for the CPU
provider, ``fuse_activation`` (Conv/Gemm + activation into onnxruntime's fused kernels). Pruning: ``prune_zero``
(lossless, default) and ``prune`` (opt-in, lossy; ``prune=`` ratio or {layer: ratio}).
"""

from . import (  # noqa: F401  (importing registers the passes)
    bmm_views,
    const_fold,
    cse,
    dce,
    dedup_weights,
    fold_bn,
    fuse_activation,
    fusions,
    known_values,
    linear_chain,
    linear_nd,
    matmul_bias,
    noops,
    norms,
    prune,
    prune_zero,
    qkv_heads,
    scalar_fold,
    select_early,
    stack_select_grads,
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
from ._run import DEFAULT, GraphReference, chooses, copy_captured, resolve, run_passes

__all__ = [
    "DEFAULT",
    "GraphReference",
    "Pass",
    "PassContext",
    "PassResult",
    "Pipeline",
    "available_passes",
    "chooses",
    "copy_captured",
    "get_pass",
    "register",
    "resolve",
    "run_passes",
    "structural_hash",
    "unregister",
]
