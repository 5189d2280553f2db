"""Fixtures of the CLI tests: model files on disk and an exported mlp shared per session."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from fxonnx.cli import main

MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.fc(x))


def make():
    torch.manual_seed(0)
    return Net(), (torch.randn(2, 4),)


def make_module_only():
    return Net()
"""


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(MODEL_FILE))
    return path


@pytest.fixture(scope="session")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    assert main(["export", "mlp", "-o", str(out), "--provider", "cpu", "-q"]) == 0
    return out


@pytest.fixture(scope="session")
def mlp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified fxonnx bundle of the zoo mlp; tests that modify it work on a copy."""
    out = tmp_path_factory.mktemp("bundle") / "mlp-bundle"
    assert main(["export", "mlp", "--bundle", str(out), "--provider", "cpu", "-q"]) == 0
    return out


@pytest.fixture
def bundle_copy(mlp_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mlp_bundle, tmp_path / "copy"))
