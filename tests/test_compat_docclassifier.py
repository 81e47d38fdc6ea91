"""``docedge.runtime.compat.DocClassifier`` behaves as DocClassifier 0.10.1 does for the things
its users rely on (the first five tests are DocClassifier's own test suite, unchanged in
meaning), plus docedge's persistent gallery and a side-by-side check against DocClassifier's
runtime where the ``docclassifier-docsaid`` package can be installed."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from docedge.runtime.compat import DocClassifier


@pytest.fixture()
def default_bundle(bundle_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCEDGE_BUNDLE", str(bundle_copy))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return bundle_copy


@pytest.fixture()
def register(tmp_path):
    from docedge.synth.documents import DocumentType, render

    root = tmp_path / "register"
    (root / "ids").mkdir(parents=True)
    for tid in range(4):
        folder = root / "ids" if tid < 2 else root
        cv2.imwrite(str(folder / f"doc{tid}.jpg"), render(DocumentType.from_id(tid), 0))
    return root


def test_construction_with_defaults(default_bundle):
    assert DocClassifier() is not None


def test_invalid_model_cfg_raises_value_error(default_bundle):
    with pytest.raises(ValueError, match="valid model_cfgs"):
        DocClassifier(model_cfg="invalid_model_cfg")


def test_list_models_is_a_non_empty_list(default_bundle):
    models = DocClassifier().list_models()
    assert isinstance(models, list) and models == ["20240326"]


def test_calling_it_on_a_random_float_image_returns_label_or_none_and_a_float(default_bundle):
    result = DocClassifier()(np.random.rand(128, 128, 3))
    assert isinstance(result, tuple) and len(result) == 2
    assert isinstance(result[0], (str, type(None))) and isinstance(result[1], float)


def test_register_folder_labels_follow_docclassifier(default_bundle, register):
    clf = DocClassifier(register_root=register)
    assert sorted(clf.bank) == ["doc2", "doc3", "ids_doc0", "ids_doc1"]
    assert all(v.shape == (256,) and v.dtype == np.float32 for v in clf.bank.values())
    assert sorted(clf.get_register(register)) == sorted(clf.bank)


def test_threshold_semantics_strictly_greater_and_none_with_zero(default_bundle, register):
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    photo = capture(render(DocumentType.from_id(0), 7), np.random.default_rng(1), 0.3)
    clf = DocClassifier(register_root=register, threshold=0.5)
    label, score = clf(photo)
    assert label == "ids_doc0" and 0.5 < score <= 1.0
    strict = DocClassifier(register_root=register, threshold=score)  # score == threshold
    assert strict(photo) == (None, 0.0)
    assert DocClassifier(register_root=register, threshold=1.0)(photo) == (None, 0.0)



def test_default_threshold_is_the_bundles_fpr_1e2_row_else_docclassifiers(default_bundle):
    from docedge.runtime.thresholds import attach_table

    assert DocClassifier().threshold == pytest.approx(0.627)  # no table: DocClassifier's default
    table = {"rows": [{"fpr": 1e-2, "tpr": 0.9, "threshold": 0.71, "supported": True}]}
    attach_table(default_bundle, "fp32", table)
    assert DocClassifier().threshold == pytest.approx(0.71)


def test_the_register_is_embedded_once_and_synced_incrementally(default_bundle, register):
    first = DocClassifier(register_root=register)
    before = first.gallery_path.stat().st_mtime_ns
    again = DocClassifier(register_root=register)
    assert again.gallery_path == first.gallery_path
    assert again.gallery_path.stat().st_mtime_ns == before  # nothing re-embedded or rewritten
    np.testing.assert_array_equal(again.bank["doc2"], first.bank["doc2"])


def test_without_a_bundle_the_error_says_what_to_do(monkeypatch, tmp_path):
    from docedge.runtime.errors import BundleError

    monkeypatch.delenv("DOCEDGE_BUNDLE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(BundleError, match="docedge export --out"):
        DocClassifier()


def test_docedge_onnx_metadata_is_json_as_capybara_requires(bundle_copy):
    """capybara's ONNX engine runs json.loads on every metadata value."""
    import onnx

    for p in bundle_copy.glob("*.onnx"):
        for prop in onnx.load(str(p)).metadata_props:
            json.loads(prop.value)


def _docclassifier_runtime():
    """DocClassifier's own package, or a skip saying why it cannot run here."""
    try:
        import docclassifier
        from docclassifier.margin_based import infer
    except ImportError:
        pytest.skip("docclassifier-docsaid (DocClassifier's runtime) is not installed")
    except Exception as e:  # capybara downloads a font at import; offline that raises
        pytest.skip(f"docclassifier-docsaid is installed but cannot import here: {e!r:.200}")
    return docclassifier, infer


def test_same_labels_and_scores_as_docclassifiers_own_runtime(default_bundle, register,
                                                             tmp_path, monkeypatch):  # fmt: skip
    """Side by side on the same ONNX file: DocClassifier's checkpoint folder is pointed at the
    bundle's fp32 model under the name it expects (it would download its own otherwise)."""
    docclassifier, infer = _docclassifier_runtime()
    import capybara as cb

    name = infer.Inference.configs["20240326"]["model_path"]
    (tmp_path / "peer" / "ckpt").mkdir(parents=True)
    (tmp_path / "peer" / "ckpt" / name).symlink_to(default_bundle / "model_fp32.onnx")
    monkeypatch.setattr(infer, "DIR", cb.Path(tmp_path / "peer"))
    ours = DocClassifier(register_root=register, threshold=0.5)
    theirs = docclassifier.DocClassifier(register_root=register, threshold=0.5)
    assert sorted(ours.bank) == sorted(theirs.bank)
    for path in sorted(register.rglob("*.jpg")):
        img = cv2.imread(str(path))
        (a, sa), (b, sb) = ours(img), theirs(img)
        assert a == b
        assert sa == pytest.approx(sb, abs=1e-3)  # the persistent gallery stores float16
