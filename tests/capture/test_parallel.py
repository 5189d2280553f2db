"""DataParallel / DistributedDataParallel wrappers: fxonnx captures ``.module`` and says so."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

import fxonnx
from fxonnx.capture import unwrap_parallel


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_unwrap_parallel_returns_the_inner_module_and_a_note() -> None:
    net = _net()
    inner, note = unwrap_parallel(nn.DataParallel(nn.DataParallel(net)))
    assert inner is net
    assert note == "unwrapped DataParallel > DataParallel: captured its .module (Sequential)"
    assert unwrap_parallel(net) == (net, None)


def test_compile_and_export_of_a_data_parallel_model_match_eager() -> None:
    net = _net()
    wrapped, x = nn.DataParallel(net), torch.randn(2, 4)
    cm = fxonnx.compile(wrapped, (x,), provider="cpu")
    assert any("unwrapped DataParallel" in n for n in cm.report.notes)
    x5 = torch.randn(5, 4)
    torch.testing.assert_close(cm(x5), net(x5), rtol=1e-4, atol=1e-5)
    names = {t.name for t in fxonnx.export(wrapped, (x,)).graph.initializer}
    assert not any(n.startswith("module.") for n in names)


def test_check_gradients_of_a_data_parallel_model() -> None:
    report = fxonnx.check_gradients(nn.DataParallel(_net()), (torch.randn(3, 4),))
    assert report.ok, report.failures()
    assert report.notes[0].startswith("unwrapped DataParallel")
    assert {"0.weight", "2.bias"} <= {c.name for c in report.checks}


def test_compile_of_a_ddp_model_matches_eager(tmp_path) -> None:  # noqa: ANN001
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        net = _net()
        x = torch.randn(2, 4)
        cm = fxonnx.compile(nn.parallel.DistributedDataParallel(net), (x,), provider="cpu")
        assert any("unwrapped DistributedDataParallel" in n for n in cm.report.notes)
        torch.testing.assert_close(cm(x), net(x), rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()
