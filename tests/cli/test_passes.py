"""--passes / --skip / --prune on export, verify and bench, and ``fxonnx passes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fxonnx.cli import main
from fxonnx.passes import DEFAULT, available_passes


def _export_json(tmp_path: Path, capsys, *flags: str) -> dict:
    out = tmp_path / "m.onnx"
    assert main(["export", "mlp", "-o", str(out), "--provider", "cpu", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_passes_none_keeps_both_layers(tmp_path: Path, capsys) -> None:
    data = _export_json(tmp_path, capsys, "--passes", "none")
    assert data["nodes"] == 2 and data["parameters"] == 850  # Linear 10->20, Linear 20->30
    assert data["verification"]["passes"] == [] and "passes" not in data["timings_ms"]


def test_default_passes_fold_the_chain(tmp_path: Path, capsys) -> None:
    data = _export_json(tmp_path, capsys)
    records = data["verification"]["passes"]
    assert [r["name"] for r in records] == list(DEFAULT)
    assert next(r for r in records if r["name"] == "linear_chain")["modified"] is True
    assert data["nodes"] == 1 and data["parameters"] == 330 and data["ok"]


def test_skip_and_explicit_list(tmp_path: Path, capsys) -> None:
    data = _export_json(tmp_path, capsys, "--skip", "linear_chain,const_fold")
    names = [r["name"] for r in data["verification"]["passes"]]
    assert "linear_chain" not in names and "const_fold" not in names and "cse" in names
    assert data["nodes"] == 2 and data["ok"]
    data = _export_json(tmp_path, capsys, "--passes", "cse, dce")
    assert [r["name"] for r in data["verification"]["passes"]] == ["cse", "dce"]


def test_export_summary_shows_passes(tmp_path: Path, capsys) -> None:
    assert main(["export", "mlp", "-o", str(tmp_path / "m.onnx"), "--provider", "cpu"]) == 0
    text = capsys.readouterr().out
    assert f"passes      {len(DEFAULT)} run in" in text
    assert "changed the graph: linear_chain" in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--passes", "cse,fold_nb"], "--passes: unknown pass 'fold_nb'"),
        (["--skip", "linear_chian"], "did you mean 'linear_chain'?"),
        (["--passes", ","], "--passes ',': no pass names"),
        (["--prune", "1.5"], "--prune 1.5: the share must be in [0, 1)"),
        (["--prune", "half"], "--prune 'half': not a number"),
        (["--prune", "fc1"], "--prune 'fc1': not a number"),
        (["--prune", "fc1=0.5,=0.1"], "expected LAYER=R pairs"),
    ],
)
def test_bad_pass_flags(flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", "mlp", "-o", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not out.exists()


def test_prune_is_reported(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.onnx"
    argv = ["export", "mlp", "-o", str(out), "--provider", "cpu", "--prune", "fc1=0.5"]
    assert main([*argv, "--passes", "none", "--no-verify"]) == 0
    text = capsys.readouterr().out
    assert "passes      1 run in" in text and "changed the graph: prune" in text
    assert "prune: 10 channels of 1 layer(s) removed, parameters 850 -> 440" in text
    assert "outputs moved by up" in text  # measured on the example inputs, not only verify
    assert out.is_file()
    # verified against the pruned graph (pruning is lossy on purpose), so no --no-verify needed
    assert main(["export", "mlp", "-o", str(out), "--provider", "cpu", "--prune", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "verified    ok" in text and "note        pruned: verified against the pruned" in text
    assert main([*argv[:-1], "fc2=0.5", "--passes", "none", "--no-verify", "--json"]) == 0
    # the last layer feeds the output, not another layer: a miss with its reason, no change
    (record,) = json.loads(capsys.readouterr().out)["verification"]["passes"]
    assert record["modified"] is False
    assert record["stats"] == {"miss:not_listed": 1, "miss:consumer_not_simple": 1}


def test_verify_model_with_passes(capsys) -> None:
    assert main(["verify", "mlp", "--passes", "none", "--provider", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["passes"] == []
    assert main(["verify", "mlp", "--skip", "dce", "--provider", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and "dce" not in [r["name"] for r in data["passes"]]


def test_pass_flags_do_not_apply_to_exported_files(mlp_bundle: Path, mlp_onnx: Path, capsys):
    for target in (mlp_bundle, mlp_onnx):
        assert main(["verify", str(target), "--skip", "cse"]) == 2
        assert "--skip applies when exporting a MODEL" in capsys.readouterr().err


def test_bundle_records_the_pipeline(tmp_path: Path, capsys) -> None:
    bundle = tmp_path / "b"
    argv = ["export", "mlp", "--bundle", str(bundle), "--passes", "linear_chain,dce", "-q"]
    assert main(argv) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [p["name"] for p in manifest["passes"]] == ["linear_chain", "dce"]
    capsys.readouterr()
    assert main(["inspect", str(bundle)]) == 0
    assert "passes      2 run in" in capsys.readouterr().out
    assert manifest["passes"][0]["modified"] is True


def test_bench_with_passes(capsys) -> None:
    argv = ["bench", "mlp", "--against", "eager", "--iters", "3", "--warmup", "0", "--json"]
    assert main([*argv, "--passes", "none", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["passes"] == {"passes": "none", "skip": [], "prune": None}
    assert [r["runner"] for r in data["results"]] == ["fxonnx", "eager"]
    assert all(r["ok"] for r in data["results"])
    assert main([*argv, "--skip", "nope"]) == 2


def test_passes_command(capsys) -> None:
    assert main(["passes", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["default"] == list(DEFAULT)
    assert [r["name"] for r in data["passes"]] == available_passes()
    prune = next(r for r in data["passes"] if r["name"] == "prune")
    assert prune == {"name": "prune", "default": False, "position": None}
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    assert f"   1  {DEFAULT[0]}" in text and "opt-in" in text and "prune" in text
    assert "--prune R runs prune first" in text
    assert (
        "fuse_activation  (with --ort-ops: once, on the lowered model, for the CPU provider)"
        in text
    )
