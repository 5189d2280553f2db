"""index lowering rules."""

from __future__ import annotations
