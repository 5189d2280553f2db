"""fxonnx bench on a tiny model: JSON fields, positive ratios, Markdown, a readable PNG."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from fxonnx.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_writes_json_markdown_png(tmp_path: Path, capsys) -> None:
    out = tmp_path / "res"
    argv = ["bench", "mlp", "--batch", "1,4", "--against", "eager,torch.onnx"]
    code = main([*argv, "--warmup", "1", "--iters", "5", "--out", str(out), "--provider", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert "p50/fxonnx" in text and "torch.onnx" in text and f"wrote {out / 'bench.png'}" in text

    data = json.loads((out / "bench.json").read_text())
    assert data["model"] == "mlp" and data["settings"]["batches"] == [1, 4]
    assert [(r["runner"], r["batch"]) for r in data["results"]] == [
        (n, b) for b in (1, 4) for n in ("fxonnx", "eager", "torch.onnx")
    ]
    for r in data["results"]:
        assert r["ok"], r["error"]
        assert r["iters"] == 5
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] > 0 and r["peak_rss_mb"] >= 0
        assert r["export_rss_mb"] is None or r["export_rss_mb"] >= 0
    fx, onnx_ = ([r for r in data["results"] if r["runner"] == n] for n in ("fxonnx", "torch.onnx"))
    # the dynamic-batch export is reused at batch 4; torch.onnx exports at each batch size
    assert fx[0]["export_ms"] > 0 and fx[1]["export_ms"] is None and fx[1]["notes"]
    assert all(r["export_ms"] > 0 for r in onnx_)
    assert len(data["ratios"]) == 4
    for ratio in data["ratios"]:
        assert ratio["p50_vs_fxonnx"] > 0 and ratio["throughput_fxonnx_vs"] > 0
    has_plot = importlib.util.find_spec("matplotlib") is not None  # the `plot` extra
    kinds = (("json", "json"), ("markdown", "md")) + ((("png", "png"),) if has_plot else ())
    assert data["files"] == {k: str(out / f"bench.{e}") for k, e in kinds}

    md = (out / "bench.md").read_text()
    assert md.startswith("# fxonnx bench: mlp")
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6 and "p50/fxonnx" in table[0]

    if not has_plot:
        assert not (out / "bench.png").exists()
        return
    png = (out / "bench.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    import matplotlib.pyplot as plt

    image = plt.imread(out / "bench.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_failing_competitor_is_reported(monkeypatch, capsys) -> None:
    import torch

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    argv = ["bench", "mlp", "--against", "eager,torch.compile", "--iters", "2", "--warmup", "0"]
    assert main([*argv, "-q", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    failed = [r for r in data["results"] if not r["ok"]]
    assert [(r["runner"], r["error"]) for r in failed] == [
        ("torch.compile", "RuntimeError: no C++ compiler found")
    ]
    assert [r["runner"] for r in data["ratios"]] == ["eager"]
    assert main(argv) == 0
    assert "torch.compile @ batch 1 failed: RuntimeError: no C++ compiler found" in (
        capsys.readouterr().out
    )


def test_bench_seconds(capsys) -> None:
    argv = ["bench", "mlp", "--against", "eager", "--seconds", "0.05", "--warmup", "0", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["seconds"] == 0.05 and data["settings"]["iters"] is None
    assert all(r["iters"] >= 3 for r in data["results"])


def test_progress_bar_on_stderr_and_quiet(capsys, monkeypatch) -> None:
    import sys

    from rich.console import Console

    import fxonnx.cli._bench as bench

    # a terminal on stderr, so rich draws the bar (it stays silent when piped)
    monkeypatch.setattr(bench, "stderr", lambda: Console(file=sys.stderr, force_terminal=True))
    argv = ["bench", "mlp", "--against", "eager", "--iters", "2", "--warmup", "0"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "eager @ batch 1" in captured.err and "@ batch" not in captured.out
    assert main([*argv, "-q"]) == 0
    assert "@ batch" not in capsys.readouterr().err


def test_matplotlib_missing_message(tmp_path: Path, monkeypatch, capsys) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    argv = ["bench", "mlp", "--against", "eager", "--iters", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert "pip install 'fxonnx[plot]'" in capsys.readouterr().err
    assert (tmp_path / "bench.json").is_file() and not (tmp_path / "bench.png").exists()
    assert "png" not in json.loads((tmp_path / "bench.json").read_text())["files"]


def test_fxonnx_failure_exits_1_and_still_reports(monkeypatch, capsys) -> None:
    import fxonnx._compile
    from fxonnx._errors import ExportError

    def broken(*args, **kwargs):
        raise ExportError("lowering exploded")

    monkeypatch.setattr(fxonnx._compile, "compile", broken)
    argv = ["bench", "mlp", "--against", "eager", "--iters", "2", "--warmup", "0", "-q"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "fxonnx @ batch 1 failed: ExportError: lowering exploded" in out
    assert main([*argv, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in data["results"]] == [False, True] and data["ratios"] == []


def test_bench_model_file_with_input(model_file: Path, capsys) -> None:
    ref = f"{model_file}:make_module_only"
    argv = ["bench", ref, "--input", "8x4", "--against", "eager", "--iters", "2", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["runner"], r["batch"], r["ok"]) for r in data["results"]] == [
        ("fxonnx", 8, True),
        ("eager", 8, True),
    ]
    assert main([*argv, "--batch", "1,2"]) == 2
    assert "--batch and --input" in capsys.readouterr().err
