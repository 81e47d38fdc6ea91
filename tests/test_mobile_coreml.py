"""Core ML artifacts (needs the [coreml] extra). Prediction needs macOS: never passed here."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("coremltools", reason="coremltools not installed: pip install 'docedge[coreml]'")


def test_coreml_packages_are_recorded_not_run_and_every_file_hashed(seeded_bundle, seeded_reference, tmp_path):
    from docedge.export.convert import convert_bundle
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.errors import BundleError

    root = tmp_path / "b"
    shutil.copytree(seeded_bundle, root)
    report = convert_bundle(root, ["coreml"], reference=seeded_reference, benchmark=False,
                            options={"vectors": False})  # fmt: skip
    recs = {r["file"]: r for r in report.records}
    assert set(recs) == {"model_fp16.mlpackage", "model_int8w.mlpackage"}
    for rec in recs.values():
        v = rec["verification"]
        assert v["passed"] is None
        assert v["verified_with"] == {"status": "not run", "reason": "needs macOS (Core ML prediction is "
                                      "not available on Linux)"}  # fmt: skip
        assert any(f["path"].endswith("weight.bin") for f in rec["files"])
        assert rec["size"] == sum(f["size"] for f in rec["files"])
    assert recs["model_int8w.mlpackage"]["size"] < 0.7 * recs["model_fp16.mlpackage"]["size"]
    load_bundle(root)
    w = next((root / "model_int8w.mlpackage").rglob("weight.bin"))
    w.write_bytes(w.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="weight.bin"):
        load_bundle(root)
