"""Golden files in Polygraphy's formats: they round-trip through Polygraphy's own loaders, and
the real ``polygraphy run --onnxrt --load-inputs --load-outputs`` accepts conforming artifacts
(fp32 and fp16, at the suggested tolerances) and rejects wrong outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docedge.calibration.golden import (
    POLYGRAPHY_TOLERANCES,
    load_golden,
    polygraphy_command,
    write_golden,
    write_golden_for_bundle,
)
from docedge.runtime.errors import BackendUnavailableError

pytest.importorskip("polygraphy")
POLYGRAPHY = Path(sys.executable).with_name("polygraphy")


def polygraphy_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{POLYGRAPHY.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_round_trip_through_polygraphys_own_loaders(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((11, 3, 128, 128), dtype=np.float32)
    y = rng.standard_normal((11, 256)).astype(np.float32)
    files = write_golden(tmp_path, x, y, batch_size=4)
    feeds, outputs = load_golden(files["inputs"], files["outputs"])
    assert [f["img"].shape[0] for f in feeds] == [4, 4, 3]
    assert np.array_equal(np.concatenate([f["img"] for f in feeds]), x)
    assert np.array_equal(np.concatenate([o["feats"] for o in outputs]), y)
    assert all(o["feats"].dtype == np.float32 for o in outputs)


def test_without_polygraphy_the_error_says_what_to_install(tmp_path, monkeypatch):
    for mod in ("polygraphy", "polygraphy.json", "polygraphy.comparator"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(BackendUnavailableError, match="pip install polygraphy"):
        write_golden(tmp_path, np.zeros((1, 3, 128, 128), np.float32), np.zeros((1, 256), np.float32))


@pytest.mark.slow
def test_polygraphy_itself_checks_artifacts_against_the_golden_files(
    bundle_copy, seeded_reference, check_image_files, tmp_path
):
    from docedge.calibration.parity import run_parity
    from docedge.export.fp16 import add_fp16_artifact
    from docedge.runtime.bundle import load_bundle

    add_fp16_artifact(bundle_copy, seeded_reference)
    result = run_parity(bundle_copy, check_image_files[0].parent, tensorrt=False, progress=False,
                        reference=seeded_reference)  # fmt: skip
    golden = write_golden_for_bundle(tmp_path / "golden", load_bundle(bundle_copy), result,
                                     max_images=12)  # fmt: skip
    assert set(golden["commands"]) == {"fp32", "fp16"}
    fp16 = next(a for a in result.artifacts if a["precision"] == "fp16")
    assert fp16["embedding"]["max_abs_diff"] < POLYGRAPHY_TOLERANCES["fp16"][0]  # headroom

    # the generated script: one `polygraphy run` per ONNX artifact, each must pass
    ok = subprocess.run(["sh", golden["script"]], capture_output=True, text=True, timeout=300,
                        env=polygraphy_env())  # fmt: skip
    log = ok.stdout + ok.stderr
    assert ok.returncode == 0, log[-3000:]
    # 2 artifacts x 2 iterations (12 images, 8 per feed)
    assert log.count("PASSED | Output: 'feats'") == 2 * 2 and "FAILED" not in log

    # wrong outputs (the reference negated) must fail, even at the loosest suggested tolerance
    bad = write_golden(tmp_path / "bad", result.raw["inputs"][:12], -result.raw["reference"][:12])
    cmd = polygraphy_command(bundle_copy / "model_fp32.onnx", bad, "int8").split()
    cmd[0] = str(POLYGRAPHY)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr
