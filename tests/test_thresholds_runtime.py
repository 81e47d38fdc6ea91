"""Threshold tables on the device: the shipped 20240326 table (exactly the published numbers,
recognized from the model_cfg or the released file name), operating points chosen by FPR or
explicitly, clear errors, and attaching a user's table to a bundle's manifest atomically."""

from __future__ import annotations

import json

import pytest

from docedge.runtime.bundle import load_bundle, read_manifest
from docedge.runtime.errors import ThresholdError
from docedge.runtime.thresholds import (
    DEFAULT_FPR,
    attach_table,
    bundle_operating_point,
    operating_point,
    published_table,
    published_table_for,
    validate_table,
)

RELEASED = "lcnet050_cosface_f256_r128_squeeze_lbn_imagenet_finetune_20240326_fp32.onnx"


def test_shipped_table_is_the_published_one():
    t = published_table()
    validate_table(t)
    assert t["precision"] == "fp32" and t["auroc"] == 0.9984
    assert [(r["fpr"], r["tpr"], r["threshold"]) for r in t["rows"]] == [
        (1e-5, 0.856, 0.705), (1e-4, 0.912, 0.682), (1e-3, 0.953, 0.657),
        (1e-2, 0.980, 0.626), (1e-1, 0.996, 0.581), (1.0, 1.0, 0.359),
    ]  # fmt: skip
    assert all(r["supported"] and r["achieved_fpr"] is None for r in t["rows"])
    src = t["source"]
    assert src["model_cfg"] == "20240326" and src["file"] == RELEASED
    assert "DocClassifier" in src["origin"] and src["score_space"] == "(cos+1)/2"


@pytest.mark.parametrize("info, how", [
    ({"model_cfg": "20240326"}, "model_cfg"),
    ({"model_cfg": None, "source": {"kind": "onnx", "file": RELEASED}}, "released file name"),
    ({"name": RELEASED[: -len(".onnx")], "source": {"kind": "checkpoint", "file": "x.ckpt"}},
     "released file name"),
    ({"source": {"file": RELEASED.replace("_fp32", "_fp16")}}, "released file name"),
])  # fmt: skip
def test_the_released_model_is_recognized(info, how):
    t = published_table_for(info)
    assert t is not None and t["source"]["recognized_by"] == how
    assert t["rows"] == published_table()["rows"]


@pytest.mark.parametrize("info", [
    {},
    {"model_cfg": "20240101"},
    {"model_cfg": None, "source": {"file": "my_model.onnx"}},
    {"name": "demo_lcnet050_synth", "source": {"kind": "random-init"}},
    {"source": {"file": RELEASED.replace("_fp32.onnx", "_v2.onnx")}},
])  # fmt: skip
def test_other_models_get_no_published_table(info):
    assert published_table_for(info) is None


def test_published_table_copies_are_independent():
    a = published_table_for({"model_cfg": "20240326"})
    a["rows"][0]["threshold"] = 0.0
    assert published_table()["rows"][0]["threshold"] == 0.705


@pytest.mark.parametrize("fpr, threshold, tpr", [
    (1e-5, 0.705, 0.856), (1e-4, 0.682, 0.912), (1e-3, 0.657, 0.953), (1e-2, 0.626, 0.98),
    (0.1, 0.581, 0.996), (1.0, 0.359, 1.0), (1e-2 * (1 + 1e-12), 0.626, 0.98),
])  # fmt: skip
def test_operating_point_by_fpr(fpr, threshold, tpr):
    op = operating_point(published_table(), fpr)
    assert (op.threshold, op.tpr, op.source) == (threshold, tpr, "table")


def test_default_is_fpr_1e_2_and_explicit_threshold_wins():
    assert DEFAULT_FPR == 1e-2
    assert operating_point(published_table()).threshold == 0.626
    assert operating_point(published_table(), None).fpr == 1e-2
    op = operating_point(published_table(), 1e-3, threshold=0.7)
    assert (op.threshold, op.fpr, op.tpr, op.source) == (0.7, None, None, "explicit")
    assert operating_point(None, threshold=0.5).threshold == 0.5
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ThresholdError, match="outside the score space"):
            operating_point(None, threshold=bad)


def test_clear_errors_list_the_rows_available():
    table = {
        "rows": [
            {"fpr": 1e-2, "tpr": 0.9, "threshold": 0.8, "supported": True},
            {"fpr": 1e-5, "tpr": None, "threshold": None, "supported": False},
        ]
    }
    with pytest.raises(ThresholdError, match=r"no table row for FPR 0\.001; available: FPR 0\.01 "
                                             r"\(threshold 0\.8, TPR 0\.9\)"):  # fmt: skip
        operating_point(table, 1e-3)
    with pytest.raises(ThresholdError, match=r"cannot support FPR 1e-05 .*available: FPR 0\.01"):
        operating_point(table, 1e-5)
    with pytest.raises(ThresholdError, match="no threshold table for this precision: give an "
                                             "explicit threshold"):  # fmt: skip
        operating_point(None, 1e-2)


@pytest.mark.parametrize("table, message", [
    ({}, "non-empty 'rows'"),
    ({"rows": []}, "non-empty 'rows'"),
    ({"rows": [{"tpr": 0.5}]}, "numeric 'fpr'"),
    ({"rows": [{"fpr": 0, "threshold": 0.5}]}, r"fpr must be in \(0, 1\]"),
    ({"rows": [{"fpr": 0.1, "threshold": 1.5}]}, "no threshold in"),
    ({"rows": [{"fpr": 0.1, "threshold": None}]}, "no threshold in"),
    ({"rows": [{"fpr": 0.1, "threshold": 0.5, "tpr": 2}]}, "tpr must be"),
    ({"rows": [{"fpr": 0.1, "threshold": 0.5}, {"fpr": 0.1, "threshold": 0.6}]}, "two rows"),
    ({"rows": [{"fpr": 0.1, "threshold": 0.5}], "auroc": 7}, "auroc"),
    ({"rows": [{"fpr": 0.1, "threshold": 0.5, "supported": "yes"}]}, "supported"),
])  # fmt: skip
def test_malformed_tables_are_refused(table, message):
    with pytest.raises(ThresholdError, match=message):
        validate_table(table)


@pytest.fixture()
def bundle_dir(bundle_copy):
    """A real bundle without threshold tables."""
    from docedge.runtime.bundle import read_manifest, write_manifest

    m = read_manifest(bundle_copy)
    m["thresholds"] = {}
    write_manifest(bundle_copy, m)
    return bundle_copy


def test_attach_a_table_from_a_json_file(bundle_dir, tmp_path):
    table = {"precision": "fp32", "auroc": 0.99, "source": {"data": "my 40 classes"},
             "rows": [{"fpr": 1e-2, "tpr": 0.95, "threshold": 0.81, "achieved_fpr": 0.0098,
                       "supported": True}]}  # fmt: skip
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    attach_table(bundle_dir, "fp32", path)
    written = read_manifest(bundle_dir)["thresholds"]["fp32"]
    assert written["rows"] == table["rows"] and written["source"]["data"] == "my 40 classes"
    assert written["source"]["attached_from"] == str(path.resolve())
    left = sorted(p.name for p in bundle_dir.iterdir())  # atomic: no temporary file left
    assert left == [".docedge-bundle.lock", "manifest.json", "model_fp32.onnx"]
    b = load_bundle(bundle_dir, verify=False)
    assert bundle_operating_point(b, "fp32").threshold == 0.81
    # a precision uses its own table only
    with pytest.raises(ThresholdError, match=r"bundle \(fp16\) has no threshold table"):
        bundle_operating_point(b, "fp16")
    assert bundle_operating_point(b, "fp16", threshold=0.7).threshold == 0.7


def test_attach_refuses_a_table_of_another_precision_or_a_bad_file(bundle_dir, tmp_path):
    table = {"precision": "fp32", "rows": [{"fpr": 1e-2, "threshold": 0.8}]}
    with pytest.raises(ThresholdError, match="for precision 'fp32', not 'int8'"):
        attach_table(bundle_dir, "int8", table)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ThresholdError, match="cannot read threshold table"):
        attach_table(bundle_dir, "fp32", bad)
    assert read_manifest(bundle_dir)["thresholds"] == {}
