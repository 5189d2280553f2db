"""``fxonnx inspect DIR``: what a bundle holds, from its manifest and its ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from .._dimexpr import describe_all as describe_dims
from . import _stats
from ._bundles import MANIFEST, model_path, read_manifest, show_shape
from ._common import EXIT_OK, human, human_bytes, print_json, stdout
from ._passes import summary


def describe(directory: Path, batch: int = 1) -> dict[str, Any]:
    """The manifest plus the model's graph statistics. Hashes are not checked here (that is
    ``fxonnx verify DIR``); the manifest is, against its schema."""
    import onnx

    manifest = read_manifest(directory)
    path = model_path(directory, manifest)
    model = onnx.load(path, load_external_data=False)
    stats = _stats.summary(model)
    if batch != 1:
        stats["flops_batch"] = {"batch": batch, "flops": _stats.flops(model, batch)[0]}
    return {
        "bundle": str(directory),
        "bytes": sum(f["size"] for f in manifest["files"].values())
        + (directory / MANIFEST).stat().st_size,
        "manifest": manifest,
        "graph": {
            k: stats[k]
            for k in (
                "nodes",
                "op_types",
                "ops",
                "parameters",
                "flops_batch1",
                "flops_batch",
                "producer",
            )
            if k in stats
        },
    }


def run_bundle(directory: Path, *, as_json: bool, batch: int = 1) -> int:
    d = describe(directory, batch)
    if as_json:
        print_json(d)
        return EXIT_OK
    m, g = d["manifest"], d["graph"]
    con = stdout()
    layout = m.get("layout", "fxonnx")
    con.print(
        f"[bold]{escape(str(directory))}[/] ({layout} bundle {escape(m['name'])}, format "
        f"{m['format_version']}, {len(m['files'])} files + manifest, {human_bytes(d['bytes'])})"
    )
    con.print(f"  created     {m['created']}")
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    con.print(f"  versions    {versions}")
    mod = m["model"]
    extra = f", external data {', '.join(mod['external_data'])}" if mod["external_data"] else ""
    con.print(
        f"  model       {escape(mod['file'])}, opset {mod['opset']}, IR version "
        f"{mod['ir_version']}, for {mod['provider']}{escape(extra)}"
    )
    io = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("", "name", "dtype", "shape (named dims are dynamic)"):
        io.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in m[kind]:
            io.add_row(kind[:-1], escape(t["name"]), t["dtype"], escape(show_shape(t["shape"])))
    con.print(io)
    con.print(f"  dims        {escape(describe_dims(m['dynamic_dims']))}")
    con.print(
        f"  graph       {g['nodes']} nodes, {g['op_types']} op types, "
        f"{human(g['parameters'])} parameters, {human(g['flops_batch1'])} FLOPs at batch 1"
        + (f", {human(g['flops_batch']['flops'])} at batch {batch}" if "flops_batch" in g else "")
    )
    for i, line in enumerate(summary(m["passes"]) or ["none run"]):
        con.print(f"  {'passes' if i == 0 else '':<10}  {escape(line)}")
    con.print(f"  verified    {stored_verdict(m)}")
    if m.get("benchmark"):
        bench = ", ".join(f"{k} {v}" for k, v in m["benchmark"].items())
        con.print(f"  benchmark   {escape(bench)}")
    files = Table(show_edge=False, box=None, padding=(0, 2))
    for col in ("file", "size", "sha256"):
        files.add_column(col, justify="right" if col == "size" else "left")
    for name, entry in m["files"].items():
        files.add_row(escape(name), human_bytes(entry["size"]), entry["sha256"][:16] + "...")
    con.print(files)
    con.print("  (hashes not checked here: fxonnx verify DIR checks them)")
    return EXIT_OK


def stored_verdict(manifest: dict[str, Any]) -> str:
    """The verification report stored at export, in one line of rich markup."""
    rep = manifest["verification"]
    checks = rep.get("checks", [])
    if not checks:
        return "[yellow]not verified[/] at export (exported with --no-verify)"
    worst = max(
        (c.get("max_rel", 0.0) for c in checks if isinstance(c.get("max_rel"), float)), default=0.0
    )
    if rep["ok"]:
        return f"[green]ok[/] at export ({len(checks)} checks against eager, worst rel err {worst:.1e})"
    bad = sum(not c.get("ok", False) for c in checks)
    return f"[red]FAILED[/] at export ({bad} of {len(checks)} checks against eager)"
