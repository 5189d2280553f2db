"""Optimizer steps as plain tensor math, traced into the training graph.

The formulas are torch.optim's single-tensor SGD and Adam (L2 weight decay added to the
gradient, not AdamW). Adam's bias corrections use float64 as torch does (it computes them as
Python floats). State tensors start at zero; ``step`` counts the steps taken so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .._errors import ExportError


@dataclass(frozen=True)
class Optimizer:
    """Which optimizer, its constant hyperparameters and the state it keeps per parameter."""

    kind: str  # "sgd" or "adam"
    hyper: dict[str, float | bool] = field(default_factory=dict)

    @property
    def slots(self) -> tuple[str, ...]:
        if self.kind == "adam":
            return ("exp_avg", "exp_avg_sq")
        return ("momentum_buffer",) if self.hyper.get("momentum", 0.0) else ()

    @property
    def counts_steps(self) -> bool:
        return self.kind == "adam" or bool(self.slots)


def make_optimizer(kind: str | None, **hyper: float | bool) -> Optimizer | None:
    """Validate the hyperparameters for ``kind`` (None: gradients only)."""
    if kind is None:
        if hyper:
            raise ExportError(f"optimizer hyperparameters {sorted(hyper)} given without optimizer")
        return None
    defaults: dict[str, dict[str, float | bool]] = {
        "sgd": {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
        "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    }
    if kind not in defaults:
        raise ExportError(f"optimizer must be None, 'sgd' or 'adam', not {kind!r}")
    if "betas" in hyper:
        b1, b2 = hyper.pop("betas")  # type: ignore[misc]
        hyper.update(beta1=b1, beta2=b2)
    unknown = sorted(set(hyper) - set(defaults[kind]))
    if unknown:
        raise ExportError(f"{kind} takes {sorted(defaults[kind])}, not {unknown}")
    merged = {**defaults[kind], **hyper}
    if merged.get("nesterov") and (not merged["momentum"] or merged["dampening"]):
        raise ExportError("nesterov momentum needs momentum > 0 and dampening 0")
    return Optimizer(kind, merged)


def step(
    opt: Optimizer,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[list[torch.Tensor]],
    count: torch.Tensor | None,
    lr: torch.Tensor,
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]], torch.Tensor | None]:
    """One step: new parameters, new state (per slot, per parameter) and the new step count."""
    h = opt.hyper
    new_params: list[torch.Tensor] = []
    new_state: list[list[torch.Tensor]] = [[] for _ in opt.slots]
    wd = float(h["weight_decay"])
    if opt.kind == "sgd":
        momentum, dampening = float(h["momentum"]), float(h["dampening"])
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            d_p = g + wd * p if wd else g
            if momentum:
                assert count is not None
                buf = torch.where(count == 0, d_p, state[0][i] * momentum + (1 - dampening) * d_p)
                new_state[0].append(buf)
                d_p = d_p + momentum * buf if h["nesterov"] else buf
            new_params.append(p - lr * d_p)
        return new_params, new_state, None if count is None else count + 1
    assert count is not None
    b1, b2, eps = float(h["beta1"]), float(h["beta2"]), float(h["eps"])
    t = count.to(torch.float64) + 1
    bc1 = 1 - torch.pow(b1, t)
    bc2_sqrt = torch.sqrt(1 - torch.pow(b2, t))
    step_size = (lr.to(torch.float64) / bc1).to(lr.dtype)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = g + wd * p if wd else g
        m = torch.lerp(state[0][i], g, 1 - b1)
        v = state[1][i] * b2 + (1 - b2) * g * g
        denom = torch.sqrt(v) / bc2_sqrt.to(v.dtype) + eps
        new_params.append(p - step_size * (m / denom))
        new_state[0].append(m)
        new_state[1].append(v)
    return new_params, new_state, count + 1
