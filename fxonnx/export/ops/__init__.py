"""Lowering rules, one module per op family; importing this package registers them all."""

from . import (  # noqa: F401
    activation,
    attention,
    backward,
    broadcast,
    control,
    conv,
    elementwise,
    embedding,
    factory,
    index,
    linear,
    movement,
    norm,
    pool,
    reduce,
    resize,
    rnn,
    rnn_cell,
    shape,
    unary,
)
