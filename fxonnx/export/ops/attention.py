"""attention lowering rules."""

from __future__ import annotations
