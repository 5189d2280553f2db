"""Every zoo model: compile -> save_bundle -> load in a process where torch cannot be imported
-> the same outputs as the compiled model (1e-6)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import compiled

import fxonnx
from fxonnx import models
from fxonnx.bundle import save_bundle

ROOT = Path(__file__).resolve().parents[2]

# torch (and jsonschema, an optional extra) are poisoned before fxonnx is imported: any
# `import torch` raises ImportError, and manifests go through the built-in schema checker
NO_TORCH = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None
    sys.modules["jsonschema"] = None
    import numpy as np
    import fxonnx
    jobs = json.loads(sys.argv[1])
    for name, job in jobs.items():
        model = fxonnx.load(job["bundle"])
        args = [np.load(p) for p in job["inputs"]]
        out = model(*args)
        assert list(out) == job["output_names"], (list(out), job["output_names"])
        np.savez(job["result"], *out.to_list())
    leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert leaked == ["torch"] and sys.modules["torch"] is None, leaked
    print("ok", len(jobs))
    """
)


@pytest.fixture(scope="module")
def zoo_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list, list]]:
    """name -> (compiled model's outputs, bundle's outputs in the torch-free process)."""
    tmp = tmp_path_factory.mktemp("zoo")
    jobs, expected = {}, {}
    for name in models.names():
        cm = compiled(name)
        _, inputs = models.get(name, batch=3, seed=1)
        paths = []
        for i, t in enumerate(inputs):
            paths.append(str(tmp / f"{name}.in{i}.npy"))
            np.save(paths[-1], t.numpy())
        expected[name] = [t.numpy() for t in cm.run_flat(inputs)]
        jobs[name] = {
            "bundle": str(cm.save_bundle(tmp / name)),
            "inputs": paths,
            "output_names": cm.output_names,
            "result": str(tmp / f"{name}.out.npz"),
        }
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, json.dumps(jobs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {len(jobs)}"
    results = {}
    for name, job in jobs.items():
        with np.load(job["result"]) as z:
            results[name] = (expected[name], [z[f"arr_{i}"] for i in range(len(z.files))])
    return results


@pytest.mark.parametrize("name", models.names())
def test_zoo_bundle_round_trip_without_torch(name: str, zoo_results: dict) -> None:
    want, got = zoo_results[name]
    assert len(got) == len(want)
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, g.shape, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6, err_msg=f"{name} output {i}")


def test_torch_tensors_in_give_torch_tensors_out(bundle: Path) -> None:
    model = fxonnx.load(bundle)
    cm = compiled("mnist_cnn")
    x = torch.randn(4, 1, 16, 16)
    out = model(x)
    assert isinstance(out["output"], torch.Tensor) and out[0] is out["output"]
    torch.testing.assert_close(out[0], cm(x), rtol=1e-6, atol=1e-6)
    numpy_out = model(x=x.numpy())
    assert isinstance(numpy_out.to_list()[0], np.ndarray)


def test_manifest_and_model_card_describe_the_model(tmp_path: Path) -> None:
    cm = compiled("mlp")
    bench = {"median_ms": 0.12, "batch": 8}
    directory = cm.save_bundle(tmp_path / "mlp", benchmark=bench)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format_version"] == fxonnx.bundle.FORMAT_VERSION
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 10]}]
    assert manifest["outputs"][0]["shape"] == ["batch", 30]
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["model"]["opset"] == cm.onnx_model.opset_import[0].version
    assert manifest["verification"] == cm.report.to_dict()
    assert manifest["passes"] == list(cm.report.passes)
    assert manifest["benchmark"] == bench
    assert sorted(manifest["files"]) == ["README.md", "model.onnx"]
    assert manifest["model"]["external_data"] == []
    card = (directory / "README.md").read_text()
    assert "# mlp" in card and "[batch, 10]" in card and "median_ms: 0.12" in card
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.md",
        "manifest.json",
        "model.onnx",
    ]


def test_a_bfloat16_model_bundles_and_loads(tmp_path: Path) -> None:
    """bfloat16 inputs and outputs cross a bundle as float32 numpy arrays (numpy has none)
    and as bfloat16 tensors; both give the compiled model's values, and a wrong dtype names
    the float32 it expects."""
    model, (x,) = models.get("lenet_cifar", batch=2)
    model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    cm = fxonnx.compile(model, (x,))
    bundle = fxonnx.load(save_bundle(cm, tmp_path / "bf16"))
    want = cm(x)
    got = bundle(x)[0]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    as_numpy = bundle(x.float().numpy())[0]
    assert as_numpy.dtype == np.float32
    np.testing.assert_array_equal(as_numpy, want.float().numpy())
    with pytest.raises(fxonnx.InputError, match="bfloat16 crosses as float32"):
        bundle(x.double().numpy())
