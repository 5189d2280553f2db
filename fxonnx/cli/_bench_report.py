"""Tables, ratios and files (JSON, Markdown, PNG) of ``fxonnx bench`` results."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from ._bench_run import Measure
from ._common import stdout


def ratios(results: list[Measure]) -> list[dict[str, Any]]:
    """Per batch and competitor: its p50 latency / fxonnx's (> 1: fxonnx is faster)."""
    fx = {r.batch: r for r in results if r.runner == "fxonnx" and r.ok}
    rows = []
    for r in results:
        base = fx.get(r.batch)
        if r.runner == "fxonnx" or not r.ok or base is None or not base.p50_ms:
            continue
        rows.append(
            {
                "batch": r.batch,
                "runner": r.runner,
                "p50_vs_fxonnx": r.p50_ms / base.p50_ms,
                "throughput_fxonnx_vs": (base.throughput or 0) / (r.throughput or float("inf")),
            }
        )
    return rows


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _rows(data: dict[str, Any]) -> list[list[str]]:
    ratio = {(r["batch"], r["runner"]): r["p50_vs_fxonnx"] for r in data["ratios"]}
    rows = []
    for r in data["results"]:
        if not r["ok"]:
            rows.append([r["runner"], str(r["batch"]), "failed"] + [""] * 8)
            continue
        vs = "1.00x" if r["runner"] == "fxonnx" else "-"
        if (r["batch"], r["runner"]) in ratio:  # no ratio when fxonnx failed at this batch
            vs = f"{ratio[(r['batch'], r['runner'])]:.2f}x"
        rows.append(
            [
                r["runner"],
                str(r["batch"]),
                _fmt(r["p50_ms"]),
                _fmt(r["p90_ms"]),
                _fmt(r["p99_ms"]),
                _fmt(r["throughput"], ",.0f"),
                _fmt(r["export_ms"], ",.0f"),
                _fmt(r["export_rss_mb"], ".1f"),
                _fmt(r["peak_rss_mb"], ".1f"),
                str(r["iters"]),
                vs,
            ]
        )
    return rows


HEADERS = [
    "runner",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "samples/s",
    "export ms",
    "export +MB",
    "run +MB",
    "iters",
    "p50/fxonnx",
]


def print_tables(data: dict[str, Any]) -> None:
    table = Table(
        title=f"{data['model']}: latency and throughput (p50/fxonnx > 1: fxonnx is faster)",
        title_justify="left",
    )
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "runner" else "right", no_wrap=True)
    for row in _rows(data):
        if row[2] == "failed":
            table.add_row(row[0], row[1], "[red]failed[/]")
        else:
            table.add_row(*row)
    con = stdout()
    con.print(table)
    for r in data["results"]:
        if not r["ok"]:
            con.print(f"[red]{r['runner']} @ batch {r['batch']} failed[/]: {escape(r['error'])}")
    for f in data.get("files", {}).values():
        con.print(f"wrote {f}")


def markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    lines = [
        f"# fxonnx bench: {data['model']}",
        "",
        f"fxonnx {data['fxonnx_version']}, provider {data['provider']}, "
        f"Python {data['machine']['python']}, {data['machine']['platform']}; warmup {s['warmup']}, "
        + (f"{s['seconds']} s per runner" if s["seconds"] else f"{s['iters']} iterations"),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" if h == "runner" else "---:" for h in HEADERS) + "|",
    ]
    for row in _rows(data):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines += [
        "",
        "p50/fxonnx > 1 means fxonnx is faster than that runner. +MB is the growth of the "
        "process's resident memory while exporting and while running (the first runner also "
        "pays for one-time imports).",
        "",
    ]
    lines += [
        f"- {r['runner']} @ batch {r['batch']} failed: {r['error']}"
        for r in data["results"]
        if not r["ok"]
    ]
    lines.append("")
    return "\n".join(lines)


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def chart(data: dict[str, Any], path: Path) -> bool:
    """Grouped bars of p50 latency per batch size; False (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "warning: matplotlib is not installed, so no chart was drawn "
            "(pip install 'fxonnx[plot]')",
            file=sys.stderr,
        )
        return False
    ok = [r for r in data["results"] if r["ok"]]
    batches = sorted({r["batch"] for r in ok})
    runners = list(dict.fromkeys(r["runner"] for r in ok))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(batches) * max(1, len(runners)) / 2), 4))
    width = 0.8 / max(1, len(runners))
    for i, name in enumerate(runners):
        xs, ys = [], []
        for j, b in enumerate(batches):
            hit = [r for r in ok if r["runner"] == name and r["batch"] == b]
            if hit:
                xs.append(j + (i - (len(runners) - 1) / 2) * width)
                ys.append(hit[0]["p50_ms"])
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("p50 latency (ms, lower is better)")
    ax.set_title(f"fxonnx bench: {data['model']}")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return True


def write(data: dict[str, Any], out: Path) -> dict[str, str]:
    files = {"json": out / "bench.json", "markdown": out / "bench.md", "png": out / "bench.png"}
    written = {k: str(v) for k, v in files.items()}
    if not chart(data, files["png"]):
        del written["png"]
    _atomic_write(files["markdown"], markdown(data).encode())
    _atomic_write(
        files["json"], json.dumps({**data, "files": written}, indent=2, default=str).encode()
    )
    return written
