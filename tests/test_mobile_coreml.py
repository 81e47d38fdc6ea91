"""Core ML artifacts (needs the [coreml] extra). Prediction needs macOS: never passed here."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("coremltools", reason="coremltools not installed: pip install 'docedge[coreml]'")


def test_coreml_packages_are_recorded_not_run_and_every_file_hashed(
    seeded_bundle, seeded_reference, tmp_path
):
    from docedge.export.formats.convert import convert_bundle
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.errors import BundleError

    root = tmp_path / "b"
    shutil.copytree(seeded_bundle, root)
    report = convert_bundle(root, ["coreml"], reference=seeded_reference, benchmark=False,
                            options={"vectors": False})  # fmt: skip
    recs = {r["file"]: r for r in report.records}
    assert set(recs) == {"model_fp16.mlpackage.zip", "model_int8w.mlpackage.zip"}
    for rec in recs.values():
        v = rec["verification"]
        assert v["passed"] is None
        assert v["verified_with"] == {"status": "not run", "reason": "needs macOS (Core ML prediction is "
                                      "not available on Linux)"}  # fmt: skip
        assert any(f["path"].endswith("weights/weight.bin") for f in rec["contents"])
        assert rec["static_check"]["inputs"] == {"img": [1, 3, 128, 128]}  # interface only, no parity
        assert rec["package"] == rec["file"][:-4]
    assert recs["model_int8w.mlpackage.zip"]["size"] < 0.7 * recs["model_fp16.mlpackage.zip"]["size"]
    load_bundle(root)
    # the archive is reproducible: the same package bytes give the same zip
    import zipfile

    with zipfile.ZipFile(root / "model_fp16.mlpackage.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert "model_fp16.mlpackage/Manifest.json" in names
    z = root / "model_int8w.mlpackage.zip"
    data = bytearray(z.read_bytes())
    data[len(data) // 2] ^= 0xFF
    z.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_int8w\.mlpackage.zip"):
        load_bundle(root)
