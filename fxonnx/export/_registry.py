"""The lowering table: ATen op -> rule. One-to-one ops are rows; the rest are small functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ctx import LowerCtx

Rule = Callable[["LowerCtx"], Any]
RULES: dict[Any, Rule] = {}


def lowers(*targets: Any) -> Callable[[Rule], Rule]:
    """Register ``fn`` for every target; registering a target twice is an error."""

    def register(fn: Rule) -> Rule:
        for target in targets:
            if target in RULES:
                raise RuntimeError(f"duplicate lowering rule for {target}: {fn.__module__}")
            RULES[target] = fn
        return fn

    return register


def one_to_one(table: dict[Any, str]) -> None:
    """Rows of ``aten op: ONNX op`` whose tensor inputs map over in order, no attributes."""
    for target, onnx_op in table.items():
        lowers(target)(_emit_as(onnx_op))


def _emit_as(onnx_op: str) -> Rule:
    def rule(ctx: LowerCtx) -> str:
        return ctx.emit(onnx_op, *ctx.tensor_inputs())

    rule.__doc__ = f"Lowered one-to-one to ONNX {onnx_op}."
    return rule


def rule_for(target: Any) -> Rule | None:
    return RULES.get(target)


def registered() -> Iterable[Any]:
    return RULES.keys()
