"""OpenVINO IR artifacts (issue 12): ``docedge convert --formats openvino`` writes a bf16 IR and
an NNCF INT8 IR, gates both against the PyTorch reference and commits them in one transaction;
a failed gate commits nothing; the runtime loads them hash-checked and they agree with fp32."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'docedge[openvino]')")
pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'docedge[openvino-export]')")

from docedge.calibration.pipeline import FP16_INHERIT_MIN_COSINE
from docedge.export.bundle_writer import GateError
from docedge.export.check_images import check_batch
from docedge.export.formats.gate import GATES
from docedge.export.verify import agreement
from docedge.runtime import BundleError, Embedder
from docedge.runtime.bundle import load_bundle


def _has_bf16() -> bool:
    from docedge.runtime.backends.openvino_backend import cpu_capabilities

    return "BF16" in cpu_capabilities()


needs_bf16 = pytest.mark.skipif(not _has_bf16(), reason="this CPU has no bf16 (OpenVINO capabilities)")


# ``demo_fp32`` and ``ov_bundle`` (the demo model converted with --formats openvino) are shared
# fixtures in tests/conftest.py: tests/test_openvino_precisions.py reuses the conversion.


@needs_bf16
def test_bf16_and_int8_ir_are_gated_recorded_and_hash_checked(ov_bundle):
    root, report = ov_bundle
    assert report.failed == [] and report.skipped == []
    b = load_bundle(root)  # verifies both files of each IR artifact
    recs = {a.file: a.record for a in b.artifacts}
    bf16, int8 = recs["model_bf16.xml"], recs["model_int8.xml"]
    for rec, weights in ((bf16, "model_bf16.bin"), (int8, "model_int8.bin")):
        assert rec["format"] == "openvino"
        assert [f["file"] for f in rec["files"]] == [weights] and len(rec["files"][0]["sha256"]) == 64
        v = rec["verification"]
        assert v["passed"] is True and v["against"] == "pytorch-reference"
        assert v["verified_with"]["openvino"] and v["verified_with"]["INFERENCE_PRECISION_HINT"]
        assert rec["producers"]["openvino"] != "unknown"
        assert "decisions" in v and v["gate"] == rec["gate_limits"]
        assert rec["threshold_table"]
        bench = rec["benchmark"]
        assert set(bench["speedup_vs_onnxruntime"]) == {"batch_1", "batch_32"} and bench["measured_on"]
    assert bf16["precision"] == "bf16" and bf16["inference_precision_hint"] == "bf16"
    assert bf16["weights"].startswith("fp32") and bf16["verification"]["gated_on"] == "all gate images"
    # bf16 is gated with fp16's limits; whether it borrows fp32's threshold table (and galleries)
    # is decided on its measured cosine min by fp16's inheritance rule, and stated; int8 never
    assert bf16["verification"]["gate"] == GATES["fp16"]
    rule = bf16["table_rule"]
    assert rule["cos_min"] == bf16["verification"]["cos_min"]
    assert rule["borrows"] is (rule["cos_min"] >= FP16_INHERIT_MIN_COSINE)
    if rule["borrows"]:
        assert bf16["threshold_table"].startswith("borrows fp32's")
        # fp32 galleries may be searched with bf16 embeddings (same rule)
        (inter,) = bf16["embeddings_interchangeable_with"]
        assert (inter["file"], inter["sha256"]) == ("model_fp32.onnx", recs["model_fp32.onnx"]["sha256"])
        assert "0.9995" in inter["rule"]
    else:
        assert bf16["threshold_table"].startswith("none of its own")
        assert "embeddings_interchangeable_with" not in bf16
    assert int8["threshold_table"].startswith("none of its own")
    assert "embeddings_interchangeable_with" not in int8  # never with NNCF INT8 ones
    assert int8["precision"] == "int8" and int8["inference_precision_hint"] == "f32"
    assert int8["producers"]["nncf"] != "unknown"
    q = int8["quantization"]
    assert q["tool"] == "nncf.quantize" and q["preset"] == "MIXED" and q["images_per_item"] == 16
    assert q["ignored_types"] == ["ReduceL2", "Clamp", "Divide"] and q["fake_quantize_nodes"] > 0
    assert q["ignored_names"] and q["kept_float"]["unmatched_onnx_nodes"] == []
    assert len(int8["calibration"]["data_sha256"]) == 64 and int8["calibration"]["images"] > 16
    assert int8["verification"]["gated_on"] == "document captures"
    # the ONNX artifacts stay the bundle's precisions; nothing is left over
    assert b.precisions == ["fp32"]
    assert not any(p.name.endswith(".staged") or p.is_dir() for p in root.iterdir())


@needs_bf16
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_runtime_loads_the_ir_and_it_agrees_with_fp32(ov_bundle, precision):
    root, _ = ov_bundle
    x = check_batch(8, seed=3)
    fp32 = Embedder(root).run_tensor(x)
    with Embedder(root, precision=precision, backend="openvino", threads=1,
                  performance_hint="THROUGHPUT") as emb:  # fmt: skip
        d = emb.describe()
        got = emb.run_tensor(x)
    assert d["artifact"]["file"] == f"model_{precision}.xml"
    assert d["weights"].endswith(f"model_{precision}.bin")
    assert d["PERFORMANCE_HINT"] == "THROUGHPUT" and d["INFERENCE_NUM_THREADS"] == 1
    assert d["INFERENCE_PRECISION_HINT"] == ("bf16" if precision == "bf16" else "f32")
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    assert agreement(fp32, got).cos_min > (0.999 if precision == "bf16" else 0.9)


@needs_bf16
def test_the_gated_hint_cannot_be_swapped(ov_bundle):
    with pytest.raises(ValueError, match="gated with INFERENCE_PRECISION_HINT=bf16"):
        Embedder(ov_bundle[0], precision="bf16", backend="openvino", inference_precision="f32")


@needs_bf16
@pytest.mark.parametrize("victim", ["model_bf16.bin", "model_int8.xml"])
def test_a_tampered_ir_file_is_refused(ov_bundle, tmp_path, victim):
    root = tmp_path / "b"
    shutil.copytree(ov_bundle[0], root)
    p = root / victim
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=victim):
        Embedder(root, precision="int8", backend="openvino")


@needs_bf16
def test_converted_artifacts_are_part_of_mobile_runs(ov_bundle):
    from docedge.export.formats.run import mobile_runs

    runs = {name: factory for name, _rec, factory in mobile_runs(load_bundle(ov_bundle[0]))}
    assert {"bf16/openvino", "int8/openvino"} <= set(runs)
    embed, info = runs["bf16/openvino"]()
    assert embed(check_batch(2)).shape == (2, 256) and info["INFERENCE_PRECISION_HINT"] == "bf16"


def test_a_failed_gate_commits_nothing(demo_fp32, tmp_path, monkeypatch):
    from docedge.export.formats import convert
    from docedge.export.formats import openvino as ovf

    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    before = (root / "manifest.json").read_bytes()
    real = ovf.ir_runner

    def bad_runner(xml, weights, hint, threads=2):  # an artifact that returns the wrong vectors
        embed, info = real(xml, weights, hint, threads)
        return (lambda x: embed(np.ascontiguousarray(x[:, ::-1]))), info

    monkeypatch.setattr(ovf, "ir_runner", bad_runner)
    with pytest.raises(GateError, match=r"model_int8\.xml.*nothing committed|nothing committed.*model_int8"):
        convert.convert_bundle(root, ["openvino"], benchmark=False,
                               options={"vectors": False, "openvino_precisions": ["int8"]})  # fmt: skip
    assert (root / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in root.iterdir() if p.name != ".docedge-bundle.lock") == [
        "manifest.json", "model_fp32.onnx"]  # fmt: skip


def _weighted_ops(xml):
    """``{friendly name: True when an input comes from a FakeQuantize}`` for the convolutions
    and MatMuls of an IR."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    return {op.get_friendly_name(): any(op.input_value(i).get_node().get_type_name() == "FakeQuantize"
                                        for i in range(op.get_input_size()))
            for op in model.get_ordered_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")}  # fmt: skip


@needs_bf16
def test_nncf_int8_keeps_float_the_stem_and_the_sensitive_layers(ov_bundle):
    """Without an ONNX INT8 in the bundle: the nodes ``docedge calibrate int8`` would keep float
    (the stem, the depthwise convolutions, the most sensitive layers), as OpenVINO op names in
    the IgnoredScope and the record; the IR has no FakeQuantize on their inputs."""
    import onnx

    from docedge.calibration.int8 import DEFAULT_FLOAT_FALLBACK, depthwise_convs, input_convs
    from docedge.export.formats.openvino import ov_op_names

    root = ov_bundle[0]
    q = load_bundle(root).ir_artifact("int8").record["quantization"]
    kept = q["kept_float"]
    fp32 = onnx.load(str(root / "model_fp32.onnx"))
    assert "computed as docedge calibrate int8" in kept["from"]
    assert set(input_convs(fp32)) | set(depthwise_convs(fp32)) <= set(kept["onnx_nodes"])
    assert kept["float_fallback"]["count"] == DEFAULT_FLOAT_FALLBACK
    assert set(kept["float_fallback"]["nodes"]) <= set(kept["onnx_nodes"])
    import openvino as ov

    names, unmatched = ov_op_names(ov.Core().read_model(str(root / "model_bf16.xml")), kept["onnx_nodes"])
    assert q["ignored_names"] == names and unmatched == []
    ops = _weighted_ops(root / "model_int8.xml")
    ignored = {n for n in ops if n in set(q["ignored_names"])}
    stem = [n for n in ops if n.startswith(input_convs(fp32)[0] + "/")]
    assert stem and set(stem) <= ignored
    assert ignored and not any(ops[n] for n in ignored)  # float: no FakeQuantize feeds them
    assert any(ops[n] for n in set(ops) - ignored)  # the rest is quantized


def test_without_an_onnx_int8_or_a_ranking_the_nncf_int8_keeps_the_structural_float_nodes(demo_fp32):
    """``convert_bundle`` called without ``int8_float_nodes`` (export cannot import calibration):
    the normalization, depthwise and stem convolutions; with it, what it computes."""
    from types import SimpleNamespace

    import onnx

    from docedge.export.formats.openvino import onnx_float_nodes
    from docedge.export.onnx_io import float_node_names, input_convs

    fp32 = onnx.load(str(demo_fp32 / "model_fp32.onnx"))
    ctx = SimpleNamespace(root=demo_fp32, manifest=load_bundle(demo_fp32).manifest, int8_float_nodes=None)
    names, info = onnx_float_nodes(ctx, [])
    assert names == float_node_names(fp32) and input_convs(fp32)[0] in names
    assert "no sensitivity ranking" in info["from"] and "float_fallback" not in info
    ctx.int8_float_nodes = lambda path, items: (["/x/Conv"], {"count": 1, "nodes": ["/x/Conv"]})
    names, info = onnx_float_nodes(ctx, [])
    assert names == ["/x/Conv"] and info["float_fallback"] == {"count": 1, "nodes": ["/x/Conv"]}


@needs_bf16
@pytest.mark.parametrize("cos_min", [0.9990, 0.9996])
def test_bf16_borrows_fp32s_table_only_when_its_gate_cosine_reaches_the_rule(
    demo_fp32, tmp_path, monkeypatch, cos_min
):
    """A forced gate result (passed, cosine min ``cos_min``): above fp16's inheritance rule the
    record borrows fp32's table and galleries; below it, none of its own and its galleries only."""
    from docedge.export.formats import convert
    from docedge.export.formats import gate as gating
    from docedge.runtime.errors import ThresholdError
    from docedge.runtime.thresholds import bundle_operating_point

    real = gating.gate

    def forced(data, embed, precision, *a, **k):
        rec = real(data, embed, precision, *a, **k)
        return {**rec, "cos_min": cos_min, "passed": True} if precision == "bf16" else rec

    monkeypatch.setattr(gating, "gate", forced)
    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    convert.convert_bundle(root, ["openvino"], benchmark=False,
                           options={"vectors": False, "openvino_precisions": ["bf16"]})  # fmt: skip
    b = load_bundle(root)
    rec = b.ir_artifact("bf16").record
    if cos_min >= FP16_INHERIT_MIN_COSINE:
        assert rec["threshold_table"].startswith("borrows fp32's")
        assert [e["file"] for e in rec["embeddings_interchangeable_with"]] == ["model_fp32.onnx"]
        if b.thresholds("fp32"):
            assert "borrowed" in bundle_operating_point(b, "bf16").source
    else:
        assert rec["threshold_table"].startswith("none of its own")
        assert "embeddings_interchangeable_with" not in rec
        with pytest.raises(ThresholdError, match="no threshold table of its own"):
            bundle_operating_point(b, "bf16")
    assert len(b.gallery_fingerprints(b.ir_artifact("bf16"))) == (2 if cos_min >= 0.9995 else 1)
    assert rec["verification"]["gate"] == GATES["fp16"] and rec["table_rule"]["cos_min"] == cos_min


def test_bf16_is_refused_not_committed_on_a_cpu_without_it(demo_fp32, tmp_path, monkeypatch):
    from docedge.export.formats import convert
    from docedge.export.formats import openvino as ovf

    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    monkeypatch.setattr(ovf, "bf16_unavailable_reason", lambda: "this CPU has no bf16 (test)")
    report = convert.convert_bundle(root, ["openvino"], benchmark=False,
                                    options={"vectors": False, "openvino_precisions": ["bf16"]})  # fmt: skip
    assert report.records == []
    assert report.skipped == [{"format": "openvino", "precision": "bf16", "file": "model_bf16.xml",
                               "extra": "openvino-export", "reason": "not run: this CPU has no bf16 (test)"}]
    assert [a.file for a in load_bundle(root).artifacts] == ["model_fp32.onnx"]
    with pytest.raises(BundleError, match="no OpenVINO bf16 artifact"):
        Embedder(root, precision="bf16", backend="openvino")


def test_int8_calibrates_on_the_bundles_own_int8_images(demo_fp32, tmp_path):
    """The folder the ONNX INT8 was calibrated on is reused when it still hashes the same."""
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.formats import convert
    from docedge.synth.dataset import write_documents

    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    calib = tmp_path / "cal"
    write_documents(calib, types=12, per_type=3, first_type_id=5000, progress=False)
    calibrate_int8(root, calib, progress=False, enforce_gate=False)
    onnx_int8 = load_bundle(root).artifact("int8").record
    onnx_cal = onnx_int8["calibration"]
    report = convert.convert_bundle(root, ["openvino"], benchmark=False,
                                    options={"vectors": False, "openvino_precisions": ["int8"]})  # fmt: skip
    nncf_rec = next(r for r in report.records if r["file"] == "model_int8.xml")
    cal = nncf_rec["calibration"]
    assert cal["data_sha256"] == onnx_cal["data_sha256"] and "model_int8.onnx" in cal["origin"]
    assert cal["images"] == onnx_cal["images"] == 36
    # the layers the ONNX INT8 kept float stay float in the NNCF INT8 too
    kept = nncf_rec["quantization"]["kept_float"]
    assert kept["onnx_nodes"] == onnx_int8["quantization"]["float_nodes"]
    assert "model_int8.onnx's record" in kept["from"] and kept["unmatched_onnx_nodes"] == []
    ops = _weighted_ops(root / "model_int8.xml")
    ignored = [n for n in nncf_rec["quantization"]["ignored_names"] if n in ops]
    assert ignored and not any(ops[n] for n in ignored)
    # changed since: the default set is used, and said so
    next(iter(sorted(calib.rglob("*.jpg")))).write_bytes(b"changed")
    report = convert.convert_bundle(root, ["openvino"], benchmark=False,
                                    options={"vectors": False, "openvino_precisions": ["int8"]})  # fmt: skip
    cal = next(r for r in report.records if r["file"] == "model_int8.xml")["calibration"]
    assert cal["data_sha256"] != onnx_cal["data_sha256"] and "synthetic" in cal["origin"]


@needs_bf16
def test_cli_convert_openvino_json(demo_fp32, tmp_path, capsys):
    from docedge.tools.cli import main

    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    rc = main(["convert", str(root), "--formats", "openvino", "--openvino-precisions", "bf16",
               "--no-benchmark", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] is True
    assert {a["file"] for a in out["artifacts"]} == {"model_bf16.xml", "test_vectors.zip"}
    # a usage error: exit 2 (tests/test_cli_usage_errors.py)
    assert main(["convert", str(root), "--formats", "openvino", "--openvino-precisions", "fp8"]) == 2


def test_cli_convert_json_of_the_nncf_int8_is_only_json_on_stdout(demo_fp32, ov_demo_weights, tmp_path):
    """NNCF logs (one line per ignored op) and draws progress bars on stdout: not in --json's."""
    import subprocess
    import sys

    root = tmp_path / "b"
    shutil.copytree(demo_fp32, root)
    res = subprocess.run([sys.executable, "-m", "docedge.tools.cli", "convert", str(root), "--formats",
                          "openvino", "--openvino-precisions", "int8", "--no-benchmark", "--json",
                          "--checkpoint", str(ov_demo_weights)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    (rec,) = [a for a in out["artifacts"] if a["file"] == "model_int8.xml"]
    # docedge convert passes calibrate int8's float nodes (with the sensitivity ranking)
    assert rec["quantization"]["kept_float"]["float_fallback"]["count"] > 0
    assert "ignored nodes" in res.stderr


def test_one_backend_serves_several_threads(demo_fp32):
    """Each thread gets its own infer request (one shared request is not thread-safe)."""
    from docedge.runtime.backends.openvino_backend import OpenVINOBackend

    b = OpenVINOBackend(demo_fp32 / "model_fp32.onnx", threads=1)
    xs = [check_batch(4, seed=s) for s in range(4)]
    want = [b.run(x) for x in xs]
    got = {}
    errors = []

    def work(i):
        try:
            for _ in range(20):
                got[i] = b.run(xs[i])
                assert np.allclose(got[i], want[i], atol=1e-5)
        except Exception as e:  # collected: an assertion in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []



@needs_bf16
def test_bench_times_the_ir_artifacts_with_their_gated_hints(ov_bundle):
    from docedge.calibration.benchmark import default_engines

    specs = {e.name: e for e in default_engines(str(ov_bundle[0]), ["fp32"], pytorch=False, openvino=True)}
    assert (specs["openvino-bf16-ir"].precision, specs["openvino-bf16-ir"].hint) == ("bf16", "bf16")
    assert (specs["openvino-int8-ir"].precision, specs["openvino-int8-ir"].hint) == ("int8", "f32")
    assert {"onnxruntime-fp32", "openvino-f32", "openvino-bf16"} <= set(specs)
