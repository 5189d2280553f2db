"""runtime/_races: which ONNX nodes must run on one onnxruntime thread."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from fxonnx.runtime._races import racy_on_threads


def _model(nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("data", f, [4, 3]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, [5, 1]),
            helper.make_tensor_value_info("upd", f, [5, 3]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("out", f, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _scatter_nd(out: str = "out", **attrs: str) -> onnx.NodeProto:
    return helper.make_node("ScatterND", ["data", "idx", "upd"], [out], name="s", **attrs)


def test_scatter_nd_with_a_reduction_is_racy() -> None:
    for how in ("add", "mul", "max", "min"):
        assert racy_on_threads(_model([_scatter_nd(reduction=how)])) == [
            f"s (ScatterND, reduction={how})"
        ]


def test_plain_scatters_are_not() -> None:
    assert racy_on_threads(_model([_scatter_nd()])) == []
    assert racy_on_threads(_model([_scatter_nd(reduction="none")])) == []
    elements = helper.make_node(
        "ScatterElements", ["data", "idx", "upd"], ["out"], axis=0, reduction="add"
    )
    assert racy_on_threads(_model([elements])) == []


def test_found_inside_subgraphs() -> None:
    def branch(node: onnx.NodeProto) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
        return helper.make_graph([node], "b", [], [out])

    then = branch(_scatter_nd("t", reduction="add"))
    other = branch(helper.make_node("Identity", ["data"], ["e"]))
    node = helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=other)
    assert racy_on_threads(_model([node])) == ["s (ScatterND, reduction=add)"]


def test_a_session_of_a_racy_model_runs_on_one_thread() -> None:
    from fxonnx.runtime import Session

    def runnable(node: onnx.NodeProto) -> bytes:
        model = _model([node])
        model.ir_version = 10  # onnxruntime 1.31 reads IR versions up to 13
        return model.SerializeToString()

    racy, plain = runnable(_scatter_nd(reduction="add")), runnable(_scatter_nd())
    threads = [
        Session(m, threads=2)._session.get_session_options().intra_op_num_threads
        for m in (racy, plain)
    ]
    assert threads == [1, 2]


def test_a_compiled_embedding_bag_sums_on_one_thread() -> None:
    import torch
    from torch import nn

    import fxonnx

    model = nn.EmbeddingBag(50, 8, mode="sum").eval()
    ids = torch.randint(0, 50, (2, 16))
    cm = fxonnx.compile(model, (ids,), dynamic=False)
    assert any(n.op_type == "ScatterND" for n in cm.onnx_model.graph.node)
    assert cm.session._session.get_session_options().intra_op_num_threads == 1
    torch.testing.assert_close(cm(ids), model(ids), rtol=1e-5, atol=1e-5)
