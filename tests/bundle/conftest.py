"""A fresh small bundle to load and to break."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import compiled


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A fresh bundle of mnist_cnn with its weights in external data."""
    return compiled("mnist_cnn").save_bundle(tmp_path / "b", external_data=True)
