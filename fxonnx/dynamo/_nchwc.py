"""Convolutions whose weights are session inputs, in onnxruntime's blocked NCHWc layout.

onnxruntime's CPU optimizer rewrites a ``Conv`` into its NCHWc kernels (``com.microsoft.nchwc``
``ReorderInput`` -> ``Conv`` -> ``ReorderOutput``, channels in blocks of 8 or 16 for AVX2 or
AVX-512) only when the weight is an initializer: it reorders the weight once, offline. In the
dynamo backend the weights are graph inputs (an optimizer step changes them), so every
``Conv`` runs the plain NCHW kernel: 1.2-1.7x slower on resnet18's layers at batch 8
(measured on 2 AVX-512 cores, 2026-12-01). The reordering is a reshape and a transpose of the
weight, ``(O, I, kh, kw) -> (O/B, I/B, kh, kw, B_i, B_o)``, so it can run in the graph on every
call: this module rewrites each such ``Conv`` into the NCHWc nodes with that reorder in front
of the weight. The block size is what onnxruntime's own optimizer picks on this machine,
read once from a probe session; where it does not block (no AVX2, another architecture) the
model is left alone.

With the weights reordered by the caller (``reorder_outside``, what the backend does), an
inference batch norm after a convolution is folded into the blocked weight and bias in the
same pass, and the graph is kept blocked from one convolution to the next as onnxruntime
keeps its own: max pooling in NCHWc, a residual ``Add`` as the convolution's ``Sum`` input,
the ``Relu`` after it as its activation. resnet18's inference session at batch 16 (1 thread)
ran 575 ms with 3x3 stride-1 convolutions blocked, batch norm apart and a reorder at each
layer, 537 with every convolution blocked and batch norm folded, 512 with the residual
blocks kept blocked (one ReorderOutput left, before the pooling; 2026-12-01); mobilenet_v2's
at batch 16 with its depthwise convolutions and ReLU6 blocked too 141 ms against 276.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from onnx import TensorProto, helper

from ._nchwc_fuse import DOMAIN, consumers, fuse_blocked

log = logging.getLogger(__name__)

# Output positions (samples x height x width, an unknown dim counted as 1) under which the
# per-call weight reorder (about 1 ns per weight element, in torch) costs more than the NCHWc
# kernel saves. Measured on 2 AVX-512 cores: a 512-channel 3x3 conv at 392 positions (batch 8,
# 7x7) 22.7 ms against 23.4 plain, at 196 (256 channels, 14x14) 2.5 against 2.4, at 98
# 8.3 against 5.8; resnet18's sessions with 384 instead of 1024: inference at batch 16 591
# ms against 642, training at batch 8 forward 194 against 200, backward 386 against 412
MIN_POSITIONS = 384
# ... unless they are at least this share of the weight's elements per output channel
# (input channels per group x kernel): a depthwise or narrow 1x1 conv is cheap to reorder,
# and blocked it also saves its batch norm pass and the reorders of its activations around
# a plain conv. Sessions at batch 1, 1 thread, with the torch-side reorders: mobilenet_v2
# 12.8 ms with 384 alone, 11.3 with 0.05 (its 7x7 layers blocked); resnet18 37.8 and 38.1
# (its 14x14 layers blocked, not its 7x7 ones at 0.01 of their 4608, which took 52.7)
MIN_POSITIONS_PER_WEIGHT = 0.05


@functools.cache
def block_size() -> int | None:
    """The channel block onnxruntime's NCHWc optimizer uses on this CPU (8 or 16), or None
    when it does not rewrite convolutions here: a 32-channel 1x1 ``Conv`` with a constant
    weight is optimized once and its reordered weight compared with each candidate layout."""
    import onnxruntime as ort

    channels = 32
    w = np.arange(channels * channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 4, 4])],
        [onnx.numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
            ort.InferenceSession(
                model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
            )
            optimized = onnx.load(opts.optimized_model_filepath)
    except Exception as e:  # no NCHWc then: the plain kernels are always right
        log.info("fxonnx: NCHWc probe failed: %s", e)
        return None
    if not any(n.domain == DOMAIN for n in optimized.graph.node):
        return None
    for init in optimized.graph.initializer:
        got = onnx.numpy_helper.to_array(init)
        for block in (16, 8):
            if got.shape == w.shape and np.array_equal(got, _reorder_array(w, block)):
                return block
    return None


def _reorder_array(w: np.ndarray, block: int) -> np.ndarray:
    o, i, *kernel = w.shape
    blocked = w.reshape(o // block, block, i // block, block, *kernel)
    return blocked.transpose(0, 2, 4, 5, 3, 1).reshape(w.shape)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Inferred float tensor shapes: ints, a symbol's name, or None (unknown)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    graph = inferred.graph
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = v.type.tensor_type
        if t.elem_type != TensorProto.FLOAT or not t.HasField("shape"):
            continue
        shapes[v.name] = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
        )
    return shapes


def _static(shape: tuple[int | str | None, ...] | None) -> tuple[int | None, ...] | None:
    return None if shape is None else tuple(d if isinstance(d, int) else None for d in shape)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


@dataclass(frozen=True)
class _Plan:
    """One node's NCHWc form: the equivalent convolution's weight shape ``(O, I, kh, kw)``,
    its attributes, and how the run-time weight becomes the blocked one: spatially flipped
    or not, then viewed as ``view`` and transposed by ``perm``."""

    node: onnx.NodeProto
    shape: tuple[int, int, int, int]
    attrs: dict
    flip: bool
    view: tuple[int, ...]
    perm: tuple[int, ...]
    nchw_input: bool = False  # fewer input channels than a block: the conv reads NCHW


def _plan(node: onnx.NodeProto, shapes: dict, block: int) -> _Plan | None:
    """A one-group or depthwise 2-D ``Conv`` with a run-time weight of static shape, output
    channels in whole blocks, input channels in whole blocks or fewer than one block (the
    3-channel stem: onnxruntime's NCHWc convolution then reads the plain NCHW input; it and
    a depthwise conv take the weight in (O/B, I, kh, kw, B_o)), and enough output
    positions; or a one-group or depthwise stride-1 ``ConvTranspose`` of that kind (a
    convolution's input gradient), which is the convolution with the weight's channel dims
    swapped (one-group) and its kernel flipped, padded by ``d*(k-1) - p``."""
    w, x, y = (shapes.get(n) for n in (node.input[1], node.input[0], node.output[0]))
    attrs = _attrs(node)
    if w is None or x is None or y is None or len(w) != 4 or len(x) != 4 or len(y) != 4:
        return None
    if None in w or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
        return None
    group = attrs.get("group", 1)
    strides = list(attrs.get("strides", [1, 1]))
    transpose = node.op_type == "ConvTranspose"
    if transpose and any(s != 1 for s in strides):
        return None
    # (C, 1, kh, kw) with C groups: a depthwise Conv, or the ConvTranspose of one's gradient
    depthwise = group != 1 and group == w[0] == x[1] and w[1] == 1
    if group != 1 and not depthwise:
        return None
    per_channel = (w[0] if transpose and not depthwise else w[1]) * w[2] * w[3]
    positions = (y[0] or 1) * (y[2] or 1) * (y[3] or 1)
    if positions < min(MIN_POSITIONS, MIN_POSITIONS_PER_WEIGHT * per_channel):
        return None
    kh, kw = w[2], w[3]
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    dilations = list(attrs.get("dilations", [1, 1]))
    nchw_input = False
    if not transpose:
        o, i, flip = w[0], w[1], False
        if i < block or depthwise:  # depthwise: one input channel per output channel
            nchw_input = not depthwise
            view: tuple[int, ...] = (o // block, block, i, kh, kw)
            perm: tuple[int, ...] = (0, 2, 3, 4, 1)  # (O/B, I, kh, kw, B_o)
        else:
            view = (o // block, block, i // block, block, kh, kw)
            perm = (0, 2, 4, 5, 3, 1)  # (O/B, I/B, kh, kw, B_i, B_o)
    else:
        if any(attrs.get("output_padding", [0, 0])) or "output_shape" in attrs:
            return None
        full = [d * (k - 1) for d, k in zip(dilations, (kh, kw), strict=True)] * 2
        pads = [f - q for f, q in zip(full, pads, strict=True)]
        if min(pads) < 0:
            return None
        if depthwise:  # the depthwise Conv's layout, kernel flipped
            o, i, flip = w[0], 1, True
            view, perm = (o // block, block, i, kh, kw), (0, 2, 3, 4, 1)
        else:
            o, i, flip = w[1], w[0], True  # the ConvTranspose weight is (C_in, C_out, kh, kw)
            view = (i // block, block, o // block, block, kh, kw)
            perm = (2, 0, 4, 5, 1, 3)  # the same blocked layout, with O and I swapped
    if o % block or (i % block and not (nchw_input or depthwise)):
        return None
    conv_attrs = {"kernel_shape": [kh, kw], "pads": pads, "dilations": dilations}
    if any(s != 1 for s in strides):
        conv_attrs["strides"] = strides
    if depthwise:
        conv_attrs["group"] = group
    return _Plan(node, (o, i, kh, kw), conv_attrs, flip, view, perm, nchw_input)


@dataclass(frozen=True)
class FoldedNorm:
    """An inference ``BatchNormalization`` folded into the blocked convolution that alone
    feeds it: its graph inputs ``scale``, ``bias``, ``mean``, ``var``, its ``epsilon``, the
    convolution's own bias (a graph input, or None) and the graph input ``bias_name`` that
    takes the folded bias."""

    scale: str
    bias: str
    mean: str
    var: str
    epsilon: float
    conv_bias: str | None
    bias_name: str


@dataclass(frozen=True)
class Reorder:
    """A blocked weight computed by the caller (torch reorders 2.4M floats in 2 ms where
    onnxruntime's Transpose takes 9): graph input ``name`` is graph input ``source``, flipped
    over its kernel dims or not, viewed as ``view``, permuted by ``perm``, made contiguous and
    viewed back as ``shape``. With ``norm``, the batch norm after the convolution is folded
    in as well: with ``s = scale / sqrt(var + eps)``, the weight is scaled by ``s`` per
    output channel (in the same pass as the reorder) and the convolution's bias becomes
    ``(conv_bias - mean) * s + bias``."""

    name: str
    source: str
    flip: bool
    view: tuple[int, ...]
    perm: tuple[int, ...]
    shape: tuple[int, int, int, int]
    norm: FoldedNorm | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """The graph inputs ``compute`` takes, in order."""
        n = self.norm
        if n is None:
            return (self.source,)
        return (
            self.source,
            n.scale,
            n.bias,
            n.mean,
            n.var,
            *([n.conv_bias] if n.conv_bias else []),
        )

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph inputs ``compute`` gives, in order."""
        return (self.name,) if self.norm is None else (self.name, self.norm.bias_name)

    def apply(self, w: torch.Tensor) -> torch.Tensor:
        w = w.detach()
        if self.flip:
            w = w.flip((2, 3))
        return w.reshape(self.view).permute(self.perm).contiguous().view(self.shape)

    def compute(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The values of ``outputs`` from those of ``sources``."""
        if self.norm is None:
            return (self.apply(tensors[0]),)
        w, scale, beta, mean, var, *conv_bias = (t.detach() for t in tensors)
        s = scale * torch.rsqrt(var + self.norm.epsilon)
        shift = (conv_bias[0] - mean) * s + beta if conv_bias else beta - mean * s
        per_channel = self.view[:2] + (1,) * (len(self.view) - 2)  # (O/B, B, 1, ...)
        blocked = w.reshape(self.view).permute(self.perm)
        out = torch.empty(blocked.shape, dtype=w.dtype)
        torch.mul(blocked, s.reshape(per_channel).permute(self.perm), out=out)
        return out.view(self.shape), shift


def _blocked_nodes(
    plan: _Plan,
    prefix: str,
    out: onnx.ModelProto,
    reorders: list[Reorder] | None,
    norm: onnx.NodeProto | None = None,
) -> list[onnx.NodeProto]:
    """The NCHWc nodes for ``plan``; with ``reorders`` (a list to append to) the blocked
    weight becomes a graph input the caller computes, and a batch norm ``norm`` that alone
    reads the convolution is folded into it (its output is then the blocked nodes')."""
    node, p = plan.node, prefix
    o, i, kh, kw = plan.shape
    x, bias = node.input[0], [node.input[2]] if len(node.input) > 2 and node.input[2] else []
    y = node.output[0] if norm is None else norm.output[0]
    folded = None
    if norm is not None and reorders is not None:
        eps = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
        folded = FoldedNorm(*norm.input[1:5], eps, bias[0] if bias else None, p + "b")
        bias = [p + "b"]
    reorder_in = [helper.make_node("ReorderInput", [x], [p + "x"], domain=DOMAIN)]
    x_in = x if plan.nchw_input else p + "x"
    blocked = [
        *([] if plan.nchw_input else reorder_in),
        helper.make_node("Conv", [x_in, p + "w", *bias], [p + "y"], domain=DOMAIN, **plan.attrs),
        helper.make_node("ReorderOutput", [p + "y"], [y], domain=DOMAIN, channels=o),
    ]
    if reorders is not None:
        reorders.append(
            Reorder(p + "w", node.input[1], plan.flip, plan.view, plan.perm, plan.shape, folded)
        )
        out.graph.input.append(
            helper.make_tensor_value_info(p + "w", TensorProto.FLOAT, list(plan.shape))
        )
        if folded is not None:
            out.graph.input.append(helper.make_tensor_value_info(p + "b", TensorProto.FLOAT, [o]))
        return blocked

    def const(name: str, values: list[int]) -> str:
        out.graph.initializer.append(
            onnx.numpy_helper.from_array(np.array(values, np.int64), p + name)
        )
        return p + name

    nodes = []
    weight = node.input[1]
    if plan.flip:
        big = -(2**62)
        axes, steps = const("axes", [2, 3]), const("steps", [-1, -1])
        nodes.append(
            helper.make_node(
                "Slice",
                [weight, const("starts", [-1, -1]), const("ends", [big, big]), axes, steps],
                [p + "wf"],
            )
        )
        weight = p + "wf"
    return [
        *nodes,
        helper.make_node("Reshape", [weight, const("view", list(plan.view))], [p + "w6"]),
        helper.make_node("Transpose", [p + "w6"], [p + "w6t"], perm=list(plan.perm)),
        helper.make_node("Reshape", [p + "w6t", const("shape", [o, i, kh, kw])], [p + "w"]),
        *blocked,
    ]


@dataclass(frozen=True)
class Rewritten:
    """``rewrite``'s result: the model, how many nodes run as NCHWc, and the blocked weights
    the caller feeds (empty unless asked for)."""

    model: onnx.ModelProto
    count: int
    reorders: tuple[Reorder, ...] = ()


def rewrite(
    model: onnx.ModelProto, block: int | None, *, reorder_outside: bool = False
) -> Rewritten:
    """A copy of ``model`` whose qualifying ``Conv`` and ``ConvTranspose`` nodes (``_plan``)
    with a run-time weight run as NCHWc nodes (``model`` itself when none does). With
    ``reorder_outside``, a weight that is a graph input is taken already blocked, as a new
    graph input (``Reorder``), with the inference ``BatchNormalization`` that alone reads the
    convolution folded in (``FoldedNorm``); the plain inputs are dropped when nothing else
    reads them."""
    if block is None:
        return Rewritten(model, 0)
    initializers = {i.name for i in model.graph.initializer}
    candidates = [
        n
        for n in model.graph.node
        if n.op_type in ("Conv", "ConvTranspose") and n.domain in ("", "ai.onnx")
        if len(n.input) >= 2 and n.input[1] not in initializers
    ]
    if not candidates:
        return Rewritten(model, 0)
    dims = _shapes(model)
    shapes = {name: _static(shape) for name, shape in dims.items()}
    plans = {id(n): plan for n in candidates if (plan := _plan(n, shapes, block)) is not None}
    if not plans:
        return Rewritten(model, 0)
    graph_inputs = {v.name for v in model.graph.input}
    norms = _foldable_norms(model, plans, graph_inputs) if reorder_outside else {}
    folded = {id(n) for n in norms.values()}
    reorders: list[Reorder] = []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in model.graph.node:
        plan = plans.get(id(node))
        if id(node) in folded:
            continue
        if plan is None:
            out.graph.node.append(node)
        else:
            outside = reorder_outside and node.input[1] in graph_inputs
            prefix = f"fxonnx_nchwc{len(out.graph.node)}_"
            out.graph.node.extend(
                _blocked_nodes(
                    plan, prefix, out, reorders if outside else None, norms.get(id(node))
                )
            )
    out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    fuse_blocked(out.graph, dims)
    read = {i for n in out.graph.node for i in n.input} | {v.name for v in out.graph.output}
    sources = {name for r in reorders for name in r.sources}
    unread = [v for v in out.graph.input if v.name in sources and v.name not in read]
    for v in unread:
        out.graph.input.remove(v)
    return Rewritten(out, len(plans), tuple(reorders))


def _foldable_norms(
    model: onnx.ModelProto, plans: dict[int, _Plan], graph_inputs: set[str]
) -> dict[int, onnx.NodeProto]:
    """{id(conv): batch norm} for the planned ``Conv``s, with a graph-input weight (and
    bias, if any), whose output only an inference ``BatchNormalization`` reads, its scale,
    bias, mean and variance graph inputs: the caller folds them into the blocked weight."""
    users = consumers(model.graph)
    outputs = {v.name for v in model.graph.output}
    found = {}
    for node in model.graph.node:
        plan = plans.get(id(node))
        if plan is None or node.op_type != "Conv" or node.output[0] in outputs:
            continue
        if node.input[1] not in graph_inputs or (
            len(node.input) > 2 and node.input[2] and node.input[2] not in graph_inputs
        ):
            continue
        readers = users.get(node.output[0], [])
        if len(readers) != 1 or readers[0].op_type != "BatchNormalization":
            continue
        norm = readers[0]
        training = any(a.name == "training_mode" and a.i for a in norm.attribute)
        if norm.domain not in ("", "ai.onnx") or training or len(norm.output) != 1:
            continue
        if norm.input[0] != node.output[0] or any(n not in graph_inputs for n in norm.input[1:5]):
            continue
        found[id(node)] = norm
    return found
