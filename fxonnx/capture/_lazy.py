"""Graph modules whose Python code is generated when first run, not at every recompile.

Capture, the passes and lowering read ``gm.graph``; only verification and ``run_torch`` call
the module. An eager GraphModule regenerates and compiles its ``forward`` at construction and
at each ``recompile()``: four times per export, 0.3-0.4 ms each, about a seventh of a small
model's export. torch's own lazy graph module (what torch.compile uses) defers that to the
first call or ``.code`` read, and then generates it once for the graph as it is by then.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import fx
from torch.fx._lazy_graph_module import _LazyGraphModule, _use_lazy_graph_module


@contextlib.contextmanager
def lazy_codegen() -> Iterator[None]:
    """GraphModules that torch builds inside (make_fx's) are lazy."""
    with _use_lazy_graph_module(True):
        yield


def lazy_graph_module(root: fx.GraphModule, graph: fx.Graph) -> fx.GraphModule:
    return _LazyGraphModule(root, graph)
