"""resize lowering rules."""

from __future__ import annotations
