"""fuse_activation: Conv/Gemm followed by its activation into onnxruntime's fused CPU kernels
(FusedConv, FusedGemm). The rewrite works on the lowered ONNX model for the provider that
``compile`` runs on (``fxonnx.export.fuse_activations``), only with ``compile(...,
runtime_ops=True)`` (CLI ``--ort-ops``): by default files stay standard ONNX. This entry holds only its name for
``passes=``/``skip=`` and the listing, and has nothing to do on the ATen graph."""

from __future__ import annotations

from ._infra import Pass, PassContext, PassResult, register


@register
class FuseActivation(Pass):
    """Misses (stats from ``compile``): ``no_fused_kernel_on_cuda``, ``producer_has_other_users``,
    ``not_float32_initializer_weight``, ``activation_not_fused_into_gemm``,
    ``clip_bounds_not_constant``."""

    name = "fuse_activation"
    stage = "onnx"

    def run(self, ctx: PassContext) -> PassResult:
        return PassResult(ctx.gm, modified=False)
