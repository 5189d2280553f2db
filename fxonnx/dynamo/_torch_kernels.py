"""Gradient ops that stay in torch on the CPU because torch's kernel beats their ONNX lowering.

ONNX has no convolution-gradient or pooling-gradient operator, so the lowering table builds
them from others, and for these that costs more than it can win (resnet18 and mobilenet_v2
training steps; 2 AVX-512 cores, batch 8, onnxruntime 1.31 against torch 2.13's oneDNN,
2026-12-01):

- **A convolution's weight gradient** is an im2col (a one-hot depthwise ``Conv``) and a
  matrix product. The product alone runs as fast as oneDNN's whole direct kernel, so the
  patches are pure extra: 15.5 ms against 10.2 at 64 channels 56x56, 13.5 against 9.4 at
  28x28, 14.8 against 10.3 at 14x14, 25 against 12.3 for the 7x7 stem. Over few positions
  the product wins (7x7 output, 512 channels: 14.9 against 20.5), and without taps there is
  no im2col (1x1 stride 1). A depthwise convolution's is worse, 2-20x torch's (below).
  Only the weight gradient moves: the input gradient (a transposed convolution, NCHWc)
  stays, so the chain of the backward stays in onnxruntime and each moved node is a leaf
  that reads a gradient the partition also returns.
- **Max-pool's gradient** is a ``ScatterElements``, which copies its indices into a fresh
  ``std::vector`` on every call (onnxruntime's ``GetIndices``). At resnet18's stem (1.6M
  indices, 12.8 MB) that buffer is mapped anew each time: 2,000-4,600 page faults per
  backward, and the node took 30-95 ms in the training step against 6-7 in a session
  of its own and 3-7 for torch's kernel.

``split_weight_grads`` rewrites the graph; the names it returns are left out of the
partitions. Graphs on the CUDA provider are not touched (nothing here was measured there).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch import fx

from ..capture import size_hint

aten = torch.ops.aten

# A weight gradient goes to torch from this many output positions per sample on (measured:
# torch faster at 196 and above, slower at 49)
MIN_POSITIONS = 128
# ... and from this much work on (2 x grad_output elements x weight elements per output
# channel): below it torch's per-call cost outweighs the patches saved (lenet_cifar, simple_cnn,
# mnist_cnn at 5-43 MFLOP ran 3-20% slower steps with theirs in torch; unet_small's 75-302
# MFLOP ones 15% faster)
MIN_FLOP = 50e6
# A depthwise convolution's weight gradient is one dot product per channel and tap, which
# the im2col and a batched product of one-row matrices do 2-20x slower than torch
# (mobilenet_v2 at batch 8: 144 channels at 56x56 24 ms against 11.2, 576 at 14x14 12
# against 0.53): all of them but the tiniest go to torch
MIN_DEPTHWISE_FLOP = 1e6

# A max-pool gradient goes to torch from this many elements on (8 MB of int64 indices; the
# small CNNs' are far smaller, lenet_cifar's 9.4K at batch 8, and stay in the one session)
MIN_POOL_GRAD = 1 << 20

_POOL_GRADS = (
    aten.max_pool2d_with_indices_backward.default,
    aten.max_pool3d_with_indices_backward.default,
)


def _count(dims: Any) -> int:
    """The product of traced sizes, a symbolic one counted at its example size."""
    return math.prod(size_hint(d) for d in dims)


def _numel(value: Any) -> int:
    val = value.meta.get("val") if isinstance(value, fx.Node) else None
    return _count(val.shape) if isinstance(val, torch.Tensor) else 0


def _torch_weight_grad(node: fx.Node) -> bool:
    """Whether oneDNN computes this convolution's weight gradient faster (see above)."""
    args = node.args
    if args[7] or not args[10][1]:  # transposed, or not asked for
        return False
    w, g = args[2].meta.get("val"), args[0].meta.get("val")
    if not isinstance(w, torch.Tensor) or not isinstance(g, torch.Tensor):
        return False
    if _count(w.shape[2:]) == 1:  # no taps: no im2col to save
        return False
    work = 2 * _count(g.shape) * _count(w.shape[1:])
    groups = int(args[9])
    if groups != 1:
        depthwise = groups == w.shape[0] and w.shape[1] == 1
        return depthwise and work >= MIN_DEPTHWISE_FLOP
    return _count(g.shape[2:]) >= MIN_POSITIONS and work >= MIN_FLOP


def split_weight_grads(gm: fx.GraphModule) -> frozenset[str]:
    """Give each convolution whose weight gradient torch computes faster a second
    ``convolution_backward`` for that gradient alone, and take it out of the first; returns
    the nodes to keep in torch (those, a convolution asked for nothing else, max-pool
    gradients). Leaves ``gm`` as it is and returns nothing where no node qualifies."""
    keep: set[str] = set()
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in _POOL_GRADS:
            if _numel(node.args[0]) >= MIN_POOL_GRAD:
                keep.add(node.name)
            continue
        if node.target is not aten.convolution_backward.default or not _torch_weight_grad(node):
            continue
        mask = list(node.args[10])
        if not mask[0] and not mask[2]:
            keep.add(node.name)
            continue
        with gm.graph.inserting_after(node):
            weight = gm.graph.call_function(
                aten.convolution_backward.default, (*node.args[:10], [False, True, False])
            )
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)):
            weight.meta["val"] = (None, val[1], None)
            node.meta["val"] = (val[0], None, val[2])
        node.args = (*node.args[:10], [mask[0], False, mask[2]])
        for user in list(node.users):
            if user.target is operator.getitem and user.args[1] == 1:
                user.replace_input_with(node, weight)
        keep.add(weight.name)
    if keep:
        gm.graph.lint()
        gm.recompile()
    return frozenset(keep)
