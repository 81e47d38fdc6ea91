"""ncnn artifacts via pnnx (needs the [ncnn] extra: pnnx, ncnn)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pnnx", reason="pnnx not installed: pip install 'docedge[ncnn]'")
pytest.importorskip("ncnn", reason="ncnn not installed: pip install 'docedge[ncnn]'")


def test_ncnn_fp16_and_fp32_pass_and_both_files_are_hashed(seeded_bundle, seeded_reference, tmp_path):
    from docedge.export.formats.convert import convert_bundle
    from docedge.runtime.bundle import load_bundle
    from docedge.runtime.errors import BundleError

    root = tmp_path / "b"
    shutil.copytree(seeded_bundle, root)
    report = convert_bundle(root, ["ncnn"], reference=seeded_reference, benchmark=False,
                            options={"vectors": False})  # fmt: skip
    recs = {r["precision"]: r for r in report.records}
    assert set(recs) == {"fp16", "fp32"}
    for prec, rec in recs.items():
        assert rec["verification"]["passed"] is True
        assert rec["file"] == f"model_{prec}.ncnn.param"
        assert [f["file"] for f in rec["files"]] == [f"model_{prec}.ncnn.bin"]
        assert rec["converter"]["fp16_weights"] is (prec == "fp16")
    assert recs["fp32"]["verification"]["cos_min"] > 0.99999
    assert not [p for p in root.iterdir() if "pnnx" in p.name or p.suffix == ".py"]  # pnnx's by-products
    load_bundle(root)
    b = root / "model_fp16.ncnn.bin"
    b.write_bytes(b.read_bytes()[:-4])
    with pytest.raises(BundleError, match=r"model_fp16\.ncnn.bin"):
        load_bundle(root)


def test_ncnn_from_onnx_for_imported_bundles(seeded_bundle, tmp_path):
    from docedge.export.formats.ncnn import convert_ncnn_onnx, ncnn_runner

    rec = convert_ncnn_onnx(seeded_bundle / "model_fp32.onnx", tmp_path, "m", "fp32")
    assert rec["converter"]["source"] == "ONNX (model_fp32.onnx)"
    embed, _info = ncnn_runner(tmp_path / "m.param", tmp_path / "m.bin")
    from docedge.export.check_images import check_batch

    assert embed(check_batch(2)).shape == (2, 256)
