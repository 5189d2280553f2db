"""TrainingSession: a graph whose ScatterND reduction races on several onnxruntime threads (the
embedding gradient, fxonnx/runtime/_races.py) runs on one; other graphs keep their threads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from training_helpers import assert_step_matches

import fxonnx
from fxonnx.training import TrainingSession


def _threads(session: TrainingSession) -> int:
    return session._session.get_session_options().intra_op_num_threads


def test_embedding_gradient_runs_on_one_thread(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 16), nn.Flatten(), nn.Linear(16 * 12, 3))
    ids = torch.randint(0, 20, (8, 12))  # 96 ids into 20 rows: many duplicates
    y = torch.randint(0, 3, (8,))
    path = tmp_path / "emb.onnx"
    fxonnx.export_training(model, F.cross_entropy, ids, y, path)
    session = TrainingSession(path, threads=2)
    assert _threads(session) == 1
    assert_step_matches(session, model, F.cross_entropy, (ids,), (y,))


def test_other_graphs_keep_their_threads(tmp_path) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x, y = torch.randn(3, 4), torch.randn(3, 2)
    path = tmp_path / "lin.onnx"
    fxonnx.export_training(model, F.mse_loss, x, y, path)
    assert _threads(TrainingSession(path, threads=2)) == 2
