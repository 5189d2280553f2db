"""Shape functions for ops that torch gives no fake (meta) kernel.

Tracing on fake tensors with symbolic sizes needs every op's output shape (with static sizes
fake tensors may run the real kernel instead); for these losses' backward ops, which training
graphs hold, torch has only CPU/CUDA kernels. Their gradient has the shape,
dtype and device of the input, which is all a fake kernel says.
"""

from __future__ import annotations

import torch

_LIKE_SELF = ("aten::multi_margin_loss_backward", "aten::multilabel_margin_loss_backward")


def _register() -> None:
    for name in _LIKE_SELF:
        try:
            torch.library.register_fake(name)(_like_self)
        except RuntimeError:  # a torch version that has its own fake kernel for it
            pass


def _like_self(grad: torch.Tensor, self: torch.Tensor, *args: object) -> torch.Tensor:
    return torch.empty_like(self)


_register()
