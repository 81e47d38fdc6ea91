"""``docedge calibrate thresholds``: per-precision TPR@FPR tables written into the manifest with
provenance, printed in the published layout; the bundle still verifies; the thresholds mean
the same thing to the classifier's score code. (The FPR budget rule itself is tested in
tests/test_roc.py.)"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest

from docedge.export.check_images import make_image
from docedge.runtime.bundle import load_bundle, read_manifest
from docedge.tools.cli import main
from docedge.tools.commands.calibrate_thresholds import register_thresholds

FPRS = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """6 classes x 3 PNGs, each class small perturbations of one drawing."""
    import cv2

    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for c in range(6):
        base = make_image(100 + c, 160, 240)
        (root / f"class{c}").mkdir()
        for k in range(3):
            img = np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255)
            cv2.imwrite(str(root / f"class{c}" / f"{k}.png"), img.astype(np.uint8))
    return root


def run_cli(*argv: str) -> int:
    """Through this module's own parser (independent of the ``calibrate`` group)."""
    parser = argparse.ArgumentParser()
    register_thresholds(parser.add_subparsers(dest="what", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_table_with_provenance_is_written_and_printed_in_the_published_layout(
    bundle_copy, labelled, capsys
):
    before = read_manifest(bundle_copy)
    assert run_cli("thresholds", str(bundle_copy), "--images", str(labelled)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("fp32: 18 images, 6 classes, 18 genuine / 135 impostor pairs")
    assert lines[1].split("|")[1].strip() == "FPR" and "1e-5" in lines[1] and "| 1 " in lines[1]
    assert lines[3].startswith("| TPR") and lines[4].startswith("| Threshold")
    assert "n/a" in lines[3]  # 1e-5 ... 1e-3 cannot be supported by 135 impostor pairs
    assert "unsupported" in out and "written to" in out

    after = read_manifest(bundle_copy)
    t = after["thresholds"]["fp32"]
    assert [r["fpr"] for r in t["rows"]] == FPRS and 0.5 <= t["auroc"] <= 1.0
    s = t["source"]
    assert s["precision"] == "fp32" and s["classes"] == 6 and s["images"] == 18
    assert s["genuine_pairs"] == 18 and s["impostor_pairs"] == 135
    assert s["impostor_pairs_total"] == 135 and s["impostors_sampled"] is False
    assert len(s["data_sha256"]) == 64 and s["date"].endswith("Z") and s["docedge_version"]
    assert s["artifact_sha256"] == after["artifacts"][0]["sha256"]
    rows = {r["fpr"]: r for r in t["rows"]}
    assert rows[1e-3]["supported"] is False and rows[1e-3]["threshold"] is None
    assert rows[1e-2]["supported"] and rows[1e-2]["false_accepts"] <= 1  # floor(1.35) = 1
    assert rows[1.0]["tpr"] == 1.0 and rows[1.0]["achieved_fpr"] == 1.0
    # only the manifest's thresholds changed: artifacts (and their checksums) did not
    assert after["artifacts"] == before["artifacts"]
    load_bundle(bundle_copy)  # still verifies
    meta = {p.key: p.value for p in onnx.load(str(bundle_copy / "model_fp32.onnx")).metadata_props
            if p.key.startswith("docedge.")}  # fmt: skip
    assert meta and not any("threshold" in k + v for k, v in meta.items())


def test_thresholds_mean_the_same_to_the_classifier_score_code(bundle_copy, labelled):
    """False accepts recomputed with runtime.search.scores (the classifier's float32 code) at
    each calibrated threshold equal the table's, and the runtime picks the same threshold."""
    from docedge.calibration.thresholds import LabelledImages
    from docedge.runtime.embedder import Embedder
    from docedge.runtime.search import scores
    from docedge.runtime.thresholds import bundle_operating_point

    run_cli("thresholds", str(bundle_copy), "--images", str(labelled), "--json")
    bundle = load_bundle(bundle_copy)
    data = LabelledImages.scan(labelled)
    with Embedder(bundle) as emb:
        e = emb.embed([str(p) for p in data.paths])
    s = scores(e, e)
    lab = np.array(data.labels)
    iu = np.triu_indices(len(lab), 1)
    impostor = s[iu][lab[iu[0]] != lab[iu[1]]]
    genuine = s[iu][lab[iu[0]] == lab[iu[1]]]
    for row in bundle.thresholds("fp32")["rows"]:
        if row["supported"]:
            assert int(np.count_nonzero(impostor > row["threshold"])) == row["false_accepts"]
            assert np.count_nonzero(genuine > row["threshold"]) / genuine.size == row["tpr"]
    op = bundle_operating_point(bundle, "fp32", 1e-1)
    assert op.source == "table" and op.threshold == bundle.thresholds("fp32")["rows"][4]["threshold"]


def test_every_precision_gets_its_own_table_and_one_can_be_redone_alone(
    bundle_copy, labelled, seeded_reference, capsys
):
    from docedge.export.fp16 import add_fp16_artifact

    add_fp16_artifact(bundle_copy, seeded_reference)
    assert run_cli("thresholds", str(bundle_copy), "--images", str(labelled), "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["written"] and set(res["tables"]) == {"fp32", "fp16"}
    m = read_manifest(bundle_copy)
    assert set(m["thresholds"]) == {"fp32", "fp16"}
    assert m["thresholds"]["fp16"]["source"]["artifact_sha256"] == load_bundle(
        bundle_copy).artifact("fp16").sha256  # fmt: skip
    fp32_before = m["thresholds"]["fp32"]
    # An existing table is never replaced silently (c7066f8 swapped the model card's table)
    from docedge.runtime.errors import ThresholdError

    with pytest.raises(ThresholdError, match=r"already has a fp16 table.*--replace"):
        run_cli("thresholds", str(bundle_copy), "--images", str(labelled), "--precision", "fp16")
    assert run_cli("thresholds", str(bundle_copy), "--images", str(labelled),
                   "--precision", "fp16", "--replace") == 0  # fmt: skip
    after = read_manifest(bundle_copy)["thresholds"]
    assert after["fp32"] == fp32_before
    assert after["fp16"]["source"]["replaces"]["origin"] == "docedge calibrate thresholds"


def test_impostor_sampling_is_stated_and_dry_run_writes_nothing(bundle_copy, labelled, capsys):
    manifest = (bundle_copy / "manifest.json").read_bytes()
    assert run_cli("thresholds", str(bundle_copy), "--images", str(labelled),
                   "--max-impostors", "50", "--dry-run") == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "50 impostor pairs (uniform sample of 135)" in out and "dry run" in out
    assert (bundle_copy / "manifest.json").read_bytes() == manifest
    assert run_cli("thresholds", str(bundle_copy), "--images", str(labelled),
                   "--max-impostors", "50", "--json") == 0  # fmt: skip
    s = json.loads(capsys.readouterr().out)["tables"]["fp32"]["source"]
    assert s["impostors_sampled"] is True and s["impostor_pairs"] == 50
    assert s["impostor_pairs_total"] == 135
    assert read_manifest(bundle_copy)["thresholds"]["fp32"]["source"] == s


def test_the_calibrate_group_runs_it_and_bad_input_exits_2(bundle_copy, labelled, tmp_path,
                                                           capsys):  # fmt: skip
    assert main(["calibrate", "thresholds", str(bundle_copy), "--images", str(labelled),
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["ok"] is True
    one_class = tmp_path / "one"
    (one_class / "a").mkdir(parents=True)
    (one_class / "a" / "x.png").write_bytes(next(labelled.glob("class0/*.png")).read_bytes())
    assert main(["calibrate", "thresholds", str(bundle_copy), "--images", str(one_class),
                 "--json"]) == 2  # fmt: skip
    assert "at least two class folders" in json.loads(capsys.readouterr().out)["message"]
    assert main(["calibrate", "thresholds", str(bundle_copy), "--images", str(labelled),
                 "--precision", "int8", "--json"]) == 2  # fmt: skip
