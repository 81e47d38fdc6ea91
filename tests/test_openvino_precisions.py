"""The OpenVINO IR artifacts wherever a user meets a precision: galleries know which artifact
made their embeddings, threshold tables belong to the artifact they were measured on, and
``docedge parity`` runs the IR artifacts (or reports them as not run, naming the extra).

The first half runs without OpenVINO: fake IR records on the seeded bundle, a fake engine, and
OpenVINO's import blocked. The second half (OpenVINO, NNCF and a bf16 CPU) uses the demo model
converted by ``docedge convert --formats openvino`` (the ``ov_bundle`` fixture, tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from docedge.runtime.bundle import (
    artifact_record,
    load_bundle,
    read_manifest,
    upsert_artifact,
    write_manifest,
)
from docedge.runtime.errors import BundleError, FingerprintMismatchError, ThresholdError
from docedge.runtime.gallery import Gallery
from docedge.runtime.hashing import sha256_file
from docedge.runtime.thresholds import bundle_operating_point
from docedge.tools.cli import main

ONNX_FP_KEYS = {"model_sha256", "artifact_sha256", "precision", "preprocess", "model_manifest_sha256"}


def table(threshold: float) -> dict:
    return {"rows": [{"fpr": 0.01, "tpr": 0.9, "threshold": threshold, "achieved_fpr": 0.01,
                      "supported": True}], "auroc": 0.99, "source": {"origin": "test"}}  # fmt: skip


def add_fake_ir(root: Path, interchangeable: bool = True, borrow: bool = True,
                tables: Optional[dict] = None) -> None:  # fmt: skip
    """Records of a bf16 and an NNCF INT8 IR as ``docedge convert`` writes them, over files
    that are no model (nothing here parses them), and ``tables`` as the manifest's."""
    manifest = read_manifest(root)
    fp32 = next(a for a in manifest["artifacts"] if a["file"] == "model_fp32.onnx")
    for prec, hint in (("bf16", "bf16"), ("int8", "f32")):
        xml, weights = root / f"model_{prec}.xml", root / f"model_{prec}.bin"
        xml.write_bytes(f"<net name='{prec}'/>".encode())
        weights.write_bytes(prec.encode() * 7)
        rec = artifact_record(root, xml.name, "openvino", prec, inference_precision_hint=hint,
                              files=[{"file": weights.name, "sha256": sha256_file(weights),
                                      "size": weights.stat().st_size}],
                              input={"batch": "dynamic"}, normalized_output=True,
                              verification={"passed": True})  # fmt: skip
        if prec == "bf16":
            rec["threshold_table"] = "borrows fp32's: test" if borrow else "none of its own"
            if interchangeable:
                rec["embeddings_interchangeable_with"] = [
                    {"file": "model_fp32.onnx", "sha256": fp32["sha256"], "rule": "test"}]
        else:
            rec["threshold_table"] = "none of its own (INT8 moves scores)"
        upsert_artifact(manifest, rec)
    if tables is not None:
        manifest["thresholds"] = tables
    write_manifest(root, manifest)


class FakeEngine:
    """Stands in for the OpenVINO backend: unit vectors, no model."""

    max_batch = None

    def run(self, x):
        v = np.ones((len(x), 256), np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def describe(self):
        return {"backend": "fake"}

    def close(self):
        pass


@pytest.fixture()
def fake_engine(monkeypatch):
    import docedge.runtime.embedder as embedder

    monkeypatch.setattr(embedder, "create_backend", lambda *a, **k: FakeEngine())


# --- fingerprints --------------------------------------------------------------------------------
def test_the_fingerprint_names_the_artifact_that_makes_the_embeddings(bundle_copy):
    add_fake_ir(bundle_copy)
    b = load_bundle(bundle_copy)
    onnx_fp = b.fingerprint("fp32")
    assert set(onnx_fp) == ONNX_FP_KEYS  # unchanged: older galleries still match
    assert b.fingerprint("fp32", "openvino") == onnx_fp  # no fp32 IR: OpenVINO runs the ONNX
    bf16 = b.fingerprint("bf16", "openvino")
    assert bf16["artifact_sha256"] == b.ir_artifact("bf16").sha256 and bf16["precision"] == "bf16"
    assert bf16["artifact_format"] == "openvino"
    assert bf16["artifact_weights_sha256"] == sha256_file(bundle_copy / "model_bf16.bin")
    assert b.embedding_artifact("int8", "openvino").file == "model_int8.xml"
    with pytest.raises(BundleError, match="bf16 runs only on OpenVINO"):
        b.fingerprint("bf16")
    with pytest.raises(ValueError, match="auto"):
        b.embedding_artifact("int8", "auto")


def test_a_gallery_of_fp32_embeddings_is_refused_for_an_ir_unless_recorded_interchangeable(
    bundle_copy, tmp_path, fake_engine
):
    from docedge.runtime.classifier import Classifier

    add_fake_ir(bundle_copy, interchangeable=False)
    g = tmp_path / "fp32.dgal"
    Gallery.create(g, load_bundle(bundle_copy).fingerprint("fp32"))
    for prec in ("bf16", "int8"):
        with pytest.raises(FingerprintMismatchError, match=r"artifact \[artifact_sha256\] differs.*"
                           f"rebuild BUNDLE .* --precision {prec} --backend openvino"):
            Classifier(bundle_copy, g, precision=prec, backend="openvino", threshold=0.8)
    # the bundle records that bf16 may search fp32 galleries: accepted (the NNCF INT8: never)
    add_fake_ir(bundle_copy, interchangeable=True)
    with Classifier(bundle_copy, g, precision="bf16", backend="openvino", threshold=0.8) as clf:
        assert clf.embedder.artifact.file == "model_bf16.xml"
    with pytest.raises(FingerprintMismatchError):
        Classifier(bundle_copy, g, precision="int8", backend="openvino", threshold=0.8)
    # ...only while the fp32 file is the one the record names
    m = read_manifest(bundle_copy)
    rec = next(a for a in m["artifacts"] if a["file"] == "model_bf16.xml")
    rec["embeddings_interchangeable_with"][0]["sha256"] = "0" * 64
    write_manifest(bundle_copy, m)
    with pytest.raises(FingerprintMismatchError):
        Classifier(bundle_copy, g, precision="bf16", backend="openvino", threshold=0.8)


def test_a_gallery_built_with_an_ir_is_stamped_with_it(bundle_copy, tmp_path, fake_engine,
                                                     check_image_files, capsys):  # fmt: skip
    from docedge.runtime.classifier import Classifier

    add_fake_ir(bundle_copy)
    g = tmp_path / "bf16.dgal"
    rc = main(["gallery", "add", str(bundle_copy), str(g), str(check_image_files[0]),
               "--precision", "bf16", "--backend", "openvino", "--json"])  # fmt: skip
    assert rc == 0
    fp = Gallery.open(g).fingerprint
    assert fp["artifact_format"] == "openvino" and fp["precision"] == "bf16"
    with pytest.raises(FingerprintMismatchError):  # fp32 does not search bf16 galleries
        Classifier(bundle_copy, g, precision="fp32", threshold=0.8)
    capsys.readouterr()
    info = ["gallery", "info", str(g), "--bundle", str(bundle_copy), "--json"]
    assert main([*info, "--precision", "bf16", "--backend", "openvino"]) == 0
    assert json.loads(capsys.readouterr().out)["bundle_compatible"] is True
    assert main(info) == 1
    assert json.loads(capsys.readouterr().out)["bundle_compatible"] is False


# --- thresholds ----------------------------------------------------------------------------------
def test_an_ir_uses_its_own_table_bf16_borrows_fp32s_and_nncf_int8_is_refused(bundle_copy):
    from docedge.runtime.thresholds import table_key

    add_fake_ir(bundle_copy, tables={"fp32": table(0.7), "int8": table(0.6)})
    b = load_bundle(bundle_copy)
    int8, bf16 = b.ir_artifact("int8"), b.ir_artifact("bf16")
    assert (table_key(int8), table_key(b.artifact("fp32"))) == ("int8/openvino", "fp32")
    # the ONNX int8's table is another network's: never used for the NNCF INT8
    with pytest.raises(ThresholdError, match=r"model_int8\.xml.*no threshold table of its own.*"
                       r"docedge calibrate thresholds .* --precision int8 --backend openvino"):
        bundle_operating_point(b, "int8", artifact=int8)
    assert bundle_operating_point(b, "int8", threshold=0.9, artifact=int8).source == "explicit"
    assert bundle_operating_point(b, "int8").threshold == 0.6  # the ONNX int8 keeps its own
    op = bundle_operating_point(b, "bf16", artifact=bf16)
    assert op.threshold == 0.7 and "fp32's, borrowed as model_bf16.xml's record states" in op.source
    assert bundle_operating_point(b, "bf16").threshold == 0.7  # bf16 is the IR in any case
    add_fake_ir(bundle_copy, tables={"fp32": table(0.7), "int8/openvino": table(0.65)}, borrow=False)
    b = load_bundle(bundle_copy)
    op = bundle_operating_point(b, "int8", artifact=b.ir_artifact("int8"))
    assert (op.threshold, op.source) == (0.65, "table")
    with pytest.raises(ThresholdError, match=r"model_bf16\.xml.*no threshold table of its own"):
        bundle_operating_point(b, "bf16", artifact=b.ir_artifact("bf16"))


def test_classify_nncf_int8_without_a_table_exits_2_saying_what_to_run(
    bundle_copy, tmp_path, fake_engine, check_image_files, capsys
):
    add_fake_ir(bundle_copy, tables={"fp32": table(0.7), "int8": table(0.6)})
    g = tmp_path / "int8.dgal"
    assert main(["gallery", "add", str(bundle_copy), str(g), str(check_image_files[0]),
                 "--precision", "int8", "--backend", "openvino"]) == 0  # fmt: skip
    capsys.readouterr()
    argv = ["classify", str(bundle_copy), str(g), str(check_image_files[1]), "--precision", "int8",
            "--backend", "openvino"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no threshold table of its own" in err and "--precision int8 --backend openvino" in err
    assert main([*argv, "--threshold", "0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["operating_point"]["source"] == "explicit"
    assert out["artifact"] == "model_int8.xml"


# --- parity without OpenVINO ---------------------------------------------------------------------
@pytest.fixture()
def no_openvino(monkeypatch):
    """This process as on a machine without OpenVINO (its import fails)."""
    from docedge.export.formats import _common

    real = _common.importlib.import_module

    def fake(name, *a, **k):
        if name.split(".")[0] == "openvino":
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(_common.importlib, "import_module", fake)


def test_parity_reports_ir_artifacts_as_not_run_naming_the_extra(bundle_copy, check_image_files,
                                                                 seeded_reference, no_openvino):  # fmt: skip
    from docedge.calibration.parity import run_parity

    add_fake_ir(bundle_copy)
    folder = check_image_files[0].parent
    res = run_parity(bundle_copy, folder, tensorrt=False, progress=False, reference=seeded_reference)
    assert [a["name"] for a in res.artifacts] == ["fp32/onnxruntime-cpu"]
    skipped = {s["name"]: s for s in res.skipped}
    assert set(skipped) == {"bf16/openvino", "int8/openvino"}
    for s in skipped.values():
        assert s["reason"].startswith("not run: ") and s["extra"] == "openvino"
        assert "pip install 'docedge[openvino]'" in s["reason"]
    # asked for bf16 alone: nothing ran, so the run fails (never a pass by accident)
    only = run_parity(bundle_copy, folder, precisions=["bf16"], tensorrt=False, progress=False,
                      reference=seeded_reference)  # fmt: skip
    assert not only.passed and only.artifacts == [] and [s["name"] for s in only.skipped] == ["bf16/openvino"]
    assert any("nothing compared" in f for f in only.failures)


def test_parity_cli_exits_1_when_only_not_run_ir_artifacts_were_asked_for(
    bundle_copy, check_image_files, seeded_reference, no_openvino, capsys
):
    from docedge.calibration.parity import cache_reference

    add_fake_ir(bundle_copy)
    cache_reference(load_bundle(bundle_copy), seeded_reference)
    argv = ["parity", str(bundle_copy), "--images", str(check_image_files[0].parent),
            "--random-init", "--seed", "0", "--no-tensorrt", "--json"]  # fmt: skip
    assert main([*argv, "--precision", "bf16,int8"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is False and out["artifacts"] == []
    assert {s["name"] for s in out["skipped"]} == {"bf16/openvino", "int8/openvino"}
    assert main(argv) == 0  # fp32 ran and passed; the IR artifacts are listed as not run
    out = json.loads(capsys.readouterr().out)
    assert [s["extra"] for s in out["skipped"]] == ["openvino", "openvino"]


def test_parity_says_why_bf16_cannot_run_on_this_cpu(bundle_copy, check_image_files,
                                                     seeded_reference, monkeypatch):  # fmt: skip
    from docedge.calibration.parity import run_parity
    from docedge.export.formats import openvino as ovf
    from docedge.export.formats._common import ConverterUnavailableError

    def no_bf16(xml, weights, hint, threads=2):
        if hint == "bf16":
            raise ConverterUnavailableError(f"{xml}: not run: this CPU has no bf16 support (test)")
        raise ConverterUnavailableError(f"{xml}: not run: no engine here (test)")

    monkeypatch.setattr(ovf, "ir_runner", no_bf16)
    add_fake_ir(bundle_copy)
    res = run_parity(bundle_copy, check_image_files[0].parent, precisions=["fp32", "bf16"],
                     tensorrt=False, progress=False, reference=seeded_reference)  # fmt: skip
    (skip,) = res.skipped
    assert skip["name"] == "bf16/openvino" and "extra" not in skip  # installing would not help
    assert skip["reason"].startswith("not run: ") and "this CPU has no bf16 support" in skip["reason"]
    assert "model_bf16.xml" in skip["reason"] and res.passed  # fp32 was compared and passed


def test_bf16_tolerances_are_its_conversion_gate():
    from docedge.calibration.parity import DEFAULT_TOLERANCES, export_gates, load_tolerances
    from docedge.export.formats.openvino import BF16_GATE

    bf16 = DEFAULT_TOLERANCES["bf16"]
    assert bf16["cos_min"] == BF16_GATE["cos_min"] and bf16["cos_mean"] == BF16_GATE["cos_mean"]
    assert bf16["decision_agreement"] == BF16_GATE["decision_agreement"]
    assert export_gates()["bf16"] == {"cos_min": BF16_GATE["cos_min"], "cos_mean": BF16_GATE["cos_mean"]}
    assert load_tolerances(overrides={"bf16": {"cos_min": 0.999}})["bf16"]["cos_min"] == 0.999


def test_bf16_is_gated_like_fp16_and_borrows_fp32s_table_only_by_fp16s_inheritance_rule():
    """The gate and the table rule are two things: bf16 passes on fp16's limits; after the
    gate its measured cosine min decides whether it borrows fp32's table and galleries."""
    from docedge.calibration.pipeline import FP16_INHERIT_MIN_COSINE
    from docedge.export.formats import openvino as ovf
    from docedge.export.formats.gate import GATES
    from docedge.runtime.bundle import INTERCHANGEABLE_KEY

    assert ovf.BF16_GATE == GATES["fp16"] and ovf.BORROW_TABLE_MIN_COSINE == FP16_INHERIT_MIN_COSINE
    sha = "ab" * 32
    near = ovf.table_decision({"cos_min": 0.9996, "passed": True}, sha)
    assert near["threshold_table"].startswith("borrows fp32's") and near["table_rule"]["borrows"] is True
    (entry,) = near[INTERCHANGEABLE_KEY]
    assert (entry["file"], entry["sha256"]) == ("model_fp32.onnx", sha) and "0.9995" in entry["rule"]
    far = ovf.table_decision({"cos_min": 0.9990, "passed": True}, sha)  # passes fp16's 0.999
    assert INTERCHANGEABLE_KEY not in far and far["table_rule"]["borrows"] is False
    assert far["threshold_table"].startswith("none of its own")
    assert "--precision bf16 --backend openvino" in far["threshold_table"]
    assert "--threshold" in far["threshold_table"]


def test_a_bf16_ir_without_a_table_of_its_own_never_uses_fp32s(bundle_copy, tmp_path, fake_engine):
    """As an fp16 ONNX without a table: no threshold unless given, and no fp32 gallery."""
    from docedge.export.formats.openvino import table_decision
    from docedge.runtime.classifier import Classifier

    add_fake_ir(bundle_copy, interchangeable=False, tables={"fp32": table(0.7)})
    m = read_manifest(bundle_copy)
    rec = next(a for a in m["artifacts"] if a["file"] == "model_bf16.xml")
    rec.update(table_decision({"cos_min": 0.9990}, "0" * 64))  # as docedge convert records it
    write_manifest(bundle_copy, m)
    b = load_bundle(bundle_copy)
    with pytest.raises(ThresholdError, match=r"model_bf16\.xml.*no threshold table of its own.*"
                       r"does not borrow fp32's.*--precision bf16 --backend openvino"):
        bundle_operating_point(b, "bf16")
    assert bundle_operating_point(b, "bf16", threshold=0.8).source == "explicit"
    g = tmp_path / "fp32.dgal"
    Gallery.create(g, b.fingerprint("fp32"))
    with pytest.raises(FingerprintMismatchError):
        Classifier(bundle_copy, g, precision="bf16", backend="openvino", threshold=0.8)


class _Op:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_friendly_name(self) -> str:
        return self.name


class _Model:
    def __init__(self, *names: str) -> None:
        self.ops = [_Op(n) for n in names]

    def get_ordered_ops(self):
        return self.ops


def test_onnx_float_nodes_map_to_the_openvino_ops_made_of_them():
    """OpenVINO's ONNX frontend names a biased Conv's ops ``<node>/WithoutBiases`` + ``<node>``."""
    from docedge.export.formats.openvino import ov_op_names

    model = _Model("img", "/stem/Conv/WithoutBiases", "/stem/Conv", "/stem2/Conv/WithoutBiases",
                   "/stem2/Conv", "/head/MatMul", "/ReduceL2")  # fmt: skip
    names, unmatched = ov_op_names(model, ["/stem/Conv", "/head/MatMul", "/gone/Conv"])
    assert names == ["/stem/Conv/WithoutBiases", "/stem/Conv", "/head/MatMul"]
    assert unmatched == ["/gone/Conv"]


# --- with OpenVINO: the converted demo model -----------------------------------------------------
def _has_openvino_bf16() -> bool:
    try:
        import nncf  # noqa: F401

        from docedge.runtime.backends.openvino_backend import cpu_capabilities

        return "BF16" in cpu_capabilities()
    except Exception:  # OpenVINO/NNCF missing or unusable
        return False


needs_ov = pytest.mark.skipif(not _has_openvino_bf16(),
                              reason="needs OpenVINO, NNCF and a CPU with bf16")  # fmt: skip


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """Labelled synthetic document captures: DIR/<type>/*.jpg (6 types x 3)."""
    from docedge.synth.dataset import write_documents

    root = tmp_path_factory.mktemp("docs")
    write_documents(root, types=6, per_type=3, first_type_id=5200, progress=False)
    return root


@needs_ov
def test_parity_runs_the_ir_artifacts_with_the_same_checks(ov_bundle, documents):
    from docedge.calibration.parity import run_parity

    res = run_parity(ov_bundle[0], documents, tensorrt=False, progress=False)
    arts = {a["name"]: a for a in res.to_json()["artifacts"]}
    assert {"fp32/onnxruntime-cpu", "bf16/openvino", "int8/openvino"} <= set(arts)
    for name, file, prec in (("bf16/openvino", "model_bf16.xml", "bf16"),
                             ("int8/openvino", "model_int8.xml", "int8")):  # fmt: skip
        a = arts[name]
        assert a["artifact"]["file"] == file and a["artifact"]["format"] == "openvino"
        assert a["precision"] == prec and len(a["worst_images"]) == 5 and "tpr_at_fpr" in a
        assert {c["check"] for c in a["checks"]} == set(res.tolerances[prec])
        assert a["passed"] == all(c["passed"] is not False for c in a["checks"])
    borrows = load_bundle(ov_bundle[0]).ir_artifact("bf16").record["table_rule"]["borrows"]
    src = arts["bf16/openvino"]["threshold_source"]
    assert ("borrowed as model_bf16.xml's record states" in src) is borrows
    assert "int8/openvino" not in {s["name"] for s in res.skipped}


@needs_ov
def test_classify_and_galleries_on_the_bf16_and_nncf_int8_artifacts(ov_bundle, documents, tmp_path,
                                                                    capsys):  # fmt: skip
    root = tmp_path / "b"
    shutil.copytree(ov_bundle[0], root)
    probe = str(next(iter(sorted(documents.rglob("*.jpg")))))
    bf16_g, fp32_g = tmp_path / "bf16.dgal", tmp_path / "fp32.dgal"
    ov = ["--backend", "openvino", "--threads", "1"]
    assert main(["gallery", "build", str(root), str(bf16_g), str(documents), "--precision", "bf16", *ov]) == 0
    assert main(["gallery", "build", str(root), str(fp32_g), str(documents)]) == 0
    capsys.readouterr()
    # bf16 borrows fp32's table and galleries only when its record says so (its gate cosine min
    # reached fp16's inheritance rule); otherwise it is an fp16 ONNX without a table
    borrows = load_bundle(root).ir_artifact("bf16").record["table_rule"]["borrows"]
    bf16 = ["--precision", "bf16", *ov, "--json"]
    for g in (bf16_g, fp32_g) if borrows else ():
        assert main(["classify", str(root), str(g), probe, *bf16]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] and out["results"][0]["label"] is not None
        assert "borrowed" in out["operating_point"]["source"]
    if not borrows:
        assert main(["classify", str(root), str(bf16_g), probe, *bf16]) == 2
        assert "no threshold table of its own" in json.loads(capsys.readouterr().out)["message"]
        assert main(["classify", str(root), str(bf16_g), probe, *bf16, "--threshold", "0.8"]) == 0
        assert json.loads(capsys.readouterr().out)["operating_point"]["source"] == "explicit"
        assert main(["classify", str(root), str(fp32_g), probe, *bf16, "--threshold", "0.8"]) == 2
        capsys.readouterr()
    # NNCF INT8: an fp32 gallery is refused, and without a table of its own so is the threshold
    assert main(["classify", str(root), str(fp32_g), probe, "--precision", "int8", *ov,
                 "--threshold", "0.8"]) == 2  # fmt: skip
    assert "artifact [artifact_sha256] differs" in capsys.readouterr().err
    int8_g = tmp_path / "int8.dgal"
    assert main(["gallery", "build", str(root), str(int8_g), str(documents), "--precision", "int8", *ov]) == 0
    capsys.readouterr()
    argv = ["classify", str(root), str(int8_g), probe, "--precision", "int8", *ov, "--json"]
    assert main(argv) == 2
    assert "docedge calibrate thresholds" in json.loads(capsys.readouterr().out)["message"]
    # measure its table: written under int8/openvino, then classify uses it
    assert main(["calibrate", "thresholds", str(root), "--images", str(documents), "--precision",
                 "int8", *ov, "--json"]) == 0  # fmt: skip
    written = json.loads(capsys.readouterr().out)["tables"]
    assert list(written) == ["int8/openvino"]
    src = load_bundle(root).thresholds("int8/openvino")["source"]
    assert src["artifact_file"] == "model_int8.xml" and src["engine"] == "openvino"
    assert src["artifact_sha256"] == load_bundle(root).ir_artifact("int8").sha256
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["operating_point"]["source"] == "table"
