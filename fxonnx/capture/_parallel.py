"""Data-parallel wrappers hold the model in ``.module``; fxonnx captures that model."""

from __future__ import annotations

from torch import nn


def unwrap_parallel(model: nn.Module) -> tuple[nn.Module, str | None]:
    """The model inside ``nn.DataParallel`` / ``DistributedDataParallel`` (nested ones too),
    and a note saying so; any other module comes back as it is, with None. The wrappers only
    replicate the forward across devices (and DDP syncs gradients), so the computation is the
    inner module's, and its parameter names lose the ``module.`` prefix."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    names = []
    while isinstance(model, wrappers):
        names.append(type(model).__name__)
        model = model.module
    if not names:
        return model, None
    return model, f"unwrapped {' > '.join(names)}: captured its .module ({type(model).__name__})"
