"""``docedge compare A B`` and the ranking metrics that tell apart two models with the same
top-1 (issue 15, §1)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from docedge.calibration.parity import run_parity
from docedge.calibration.ranking import ranking_metrics
from docedge.runtime.errors import DocedgeError


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ndcg_agrees_with_scikit_learn():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    emb = _unit(rng.standard_normal((40, 8)))
    labels = [str(i % 5) for i in range(40)]
    ours = ranking_metrics(emb, labels)
    theirs = []
    for q in range(40):
        others = [j for j in range(40) if j != q]
        rel = np.array([[float(labels[j] == labels[q]) for j in others]])
        theirs.append(ndcg_score(rel, (emb[others] @ emb[q])[None]))
    assert ours["ndcg"] == pytest.approx(float(np.mean(theirs)), abs=1e-9)


def test_same_top1_different_ranking_is_told_apart():
    # Query 0's nearest neighbour is relevant in both; the second relevant item is ranked 2nd
    # in "good" and last in "bad": recall@1 equal, mAP@R and NDCG lower for "bad".
    labels = ["a", "a", "a", "b", "b", "c"]
    good = _unit([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99], [-1, 0.1]])
    bad = _unit([[1, 0], [0.99, 0.1], [-0.9, -0.4], [0, 1], [0.1, 0.99], [0.8, 0.6]])
    g, b = ranking_metrics(good, labels), ranking_metrics(bad, labels)
    assert g["recall_at_1"] >= b["recall_at_1"] - 1e-9
    assert g["map_at_r"] > b["map_at_r"] and g["ndcg"] > b["ndcg"]
    assert g["skipped"] == 1  # "c" has no other image


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from docedge.synth.dataset import write_documents

    d = tmp_path_factory.mktemp("cmp") / "labelled"
    write_documents(d, types=6, per_type=3, first_type_id=950, capture_strength=0.5)
    return d


def test_compare_a_bundle_with_itself_passes_with_ranking_deltas(demo_release, labelled):
    res = run_parity(demo_release, labelled, reference_bundle=demo_release, tensorrt=False,
                     progress=False, precisions=["fp32", "fp16"])  # fmt: skip
    assert res.passed and res.reference.startswith("bundle ")
    fp32 = next(a for a in res.artifacts if a["precision"] == "fp32")
    assert fp32["ranking_delta"]["ndcg"] == 0.0 and "ndcg" in res.reference_metrics["ranking"]
    assert any("another bundle" in n for n in res.notes)


def test_compare_refuses_bundles_that_read_images_differently(demo_release, tmp_path, labelled):
    from docedge.runtime.bundle import read_manifest, write_manifest

    other = tmp_path / "other"
    shutil.copytree(demo_release, other)
    m = read_manifest(other)
    m["io"]["input"]["name"] = "input"
    write_manifest(other, m)
    with pytest.raises(DocedgeError, match="differ in io"):
        run_parity(demo_release, labelled, reference_bundle=other, tensorrt=False, progress=False)


def test_compare_cli_exit_codes(demo_release, labelled, tmp_path, capsys):
    from docedge.tools.cli import main

    assert main(["compare", str(demo_release), str(demo_release), "--images", str(labelled),
                 "--precision", "fp32,fp16", "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["reference"].startswith("bundle ")
    assert main(["compare", str(demo_release), str(tmp_path / "nope"), "--images",
                 str(labelled)]) == 2  # fmt: skip


def test_the_report_identifies_what_was_tested(demo_release, labelled):
    """Artifacts with hashes, data hash, versions and command, worst images per artifact, and
    an int8 artifact borrowing fp32's threshold said so (c7066f8 said none of it)."""
    from docedge.calibration.reports import markdown

    res = run_parity(demo_release, labelled, tensorrt=False, progress=False)
    js = res.to_json()
    assert js["images_sha256"] and js["environment"]["onnxruntime"] and js["environment"]["command"]
    for a in res.artifacts:
        assert len(a["artifact"]["sha256"]) == 64 and len(a["worst_images"]) == 5
        assert a["worst_images"][0]["cosine"] <= a["worst_images"][-1]["cosine"]
    assert any("int8" in n and "borrows the fp32 threshold" in n for n in res.notes)
    assert any("int8.cos_min is not checked" in n for n in res.notes)  # looser than at export
    md = markdown(res)
    assert "Worst images" in md and "Ranking quality" in md
