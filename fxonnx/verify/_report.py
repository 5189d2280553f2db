"""Check and Report: what was compared, how far apart it was, and the tolerance that judged it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .._errors import VerificationError


@dataclass(frozen=True)
class Check:
    """One compared tensor. ``max_abs``/``max_rel`` are the worst errors seen; ``ok`` is whether
    every element met ``|got - want| <= atol + rtol * |want|``."""

    name: str
    kind: str  # "output", "grad" or "directional"
    ok: bool
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("max_abs", "max_rel"):
            if not math.isfinite(d[key]):
                d[key] = str(d[key])
        return d


@dataclass(frozen=True)
class Report:
    """Checks plus what produced them: stage timings (ms), notes, pass statistics."""

    checks: tuple[Check, ...] = ()
    stages: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    passes: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def verified(self) -> bool:
        return bool(self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(
        self,
        *,
        checks: tuple[Check, ...] = (),
        notes: tuple[str, ...] = (),
        stages: dict[str, float] | None = None,
    ) -> Report:
        return dataclasses.replace(
            self,
            checks=self.checks + tuple(checks),
            notes=self.notes + tuple(notes),
            stages={**self.stages, **(stages or {})},
        )

    def raise_if_failed(self, context: str = "compiled model") -> Report:
        bad = self.failures()
        if bad:
            lines = [
                f"  {c.kind} {c.name}: max abs err {c.max_abs:.3g}, max rel err {c.max_rel:.3g} "
                f"(rtol {c.rtol:g}, atol {c.atol:g}){' - ' + c.note if c.note else ''}"
                for c in bad
            ]
            raise VerificationError(
                f"{context} differs from eager PyTorch in {len(bad)} of {len(self.checks)} "
                "check(s):\n" + "\n".join(lines),
                self,
                hint="pass verify=False to skip the check, or report the model as a bug",
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.to_dict() for c in self.checks],
            "stages_ms": {k: round(v, 3) for k, v in self.stages.items()},
            "notes": list(self.notes),
            "passes": list(self.passes),
        }

    def __str__(self) -> str:
        lines = [f"verification: {'ok' if self.ok else 'FAILED'} ({len(self.checks)} checks)"]
        for c in self.checks:
            mark = "ok " if c.ok else "BAD"
            lines.append(
                f"  {mark} {c.kind:<6} {c.name:<28} abs {c.max_abs:9.2e}  rel {c.max_rel:9.2e}"
                f"  (rtol {c.rtol:g}, atol {c.atol:g}){'  ' + c.note if c.note else ''}"
            )
        if self.stages:
            lines.append(
                "  stages: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.stages.items())
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
