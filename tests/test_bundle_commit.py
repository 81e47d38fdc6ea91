"""Every bundle change is staged and committed atomically (issue 15, §2).

On c7066f8 a failed INT8 re-calibration deleted the listed INT8 files and left the whole bundle
unloadable, a kill during re-calibration broke it in 4 of 14 kills, and every commit wrote
files with mode 0600. Here: failures and kills leave the previous bundle loadable, and files
follow the umask.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from docedge.runtime import BundleError, load_bundle
from docedge.runtime.bundle_commit import BundleTransaction


def _snapshot(root: Path):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()
            and not p.name.startswith(".")}  # fmt: skip


def test_an_exception_inside_a_transaction_changes_nothing(bundle_copy):
    before = _snapshot(bundle_copy)
    with pytest.raises(RuntimeError), BundleTransaction(bundle_copy) as tx:
        staged = tx.stage("model_fp32.onnx")
        staged.write_bytes(b"new content")
        tx.add_artifact(staged, "model_fp32.onnx", "onnx", "fp32")
        tx.manifest["thresholds"] = {}
        raise RuntimeError("gate failed")
    assert _snapshot(bundle_copy) == before
    assert not [p for p in bundle_copy.iterdir() if p.name.endswith(".staged")]
    load_bundle(bundle_copy)


def test_replacing_a_listed_file_keeps_the_old_one_valid_until_the_commit(bundle_copy):
    old = (bundle_copy / "model_fp32.onnx").read_bytes()
    with BundleTransaction(bundle_copy) as tx:
        staged = tx.stage("model_fp32.onnx")
        staged.write_bytes(old[:-1] + bytes([old[-1] ^ 1]))
        rec = tx.add_artifact(staged, "model_fp32.onnx", "onnx", "fp32")
        assert rec["file"] != "model_fp32.onnx"  # content-derived name until committed
        assert (bundle_copy / "model_fp32.onnx").read_bytes() == old
        load_bundle(bundle_copy)  # the previous state is still complete
    b = load_bundle(bundle_copy, verify=True)
    assert b.artifact("fp32").file == "model_fp32.onnx"  # name restored after the commit
    assert len([p for p in bundle_copy.iterdir() if p.suffix == ".onnx"]) == 1


def test_leftovers_of_a_killed_transaction_are_removed_by_the_next(bundle_copy):
    (bundle_copy / ".model_int8.onnx.deadbeef.staged").write_bytes(b"partial")
    with BundleTransaction(bundle_copy):
        pass
    assert not (bundle_copy / ".model_int8.onnx.deadbeef.staged").exists()


def test_a_second_writer_waits_for_the_lock_and_then_gives_up_clearly(bundle_copy):
    with BundleTransaction(bundle_copy):
        with pytest.raises(BundleError, match="another docedge process"):
            with BundleTransaction(bundle_copy, lock_timeout_s=0.2):
                pass


def test_a_failed_int8_recalibration_leaves_the_previous_int8_bundle_intact(demo_release, tmp_path):
    from docedge.calibration.int8 import calibrate_int8
    from docedge.export.check_images import write_check_images
    from docedge.export.gates import GateError

    bundle = tmp_path / "b"
    shutil.copytree(demo_release, bundle)
    calib = tmp_path / "calib"
    write_check_images(calib, count=8, seed=3)
    before = _snapshot(bundle)
    with pytest.raises(GateError, match="bundle is unchanged"):
        calibrate_int8(bundle, calib, method="minmax", mean_cosine=1.0, progress=False, batch_size=4)
    assert _snapshot(bundle) == before
    b = load_bundle(bundle, verify=True)
    assert set(b.precisions) == {"fp32", "fp16", "int8"}


_KILL_WORKER = textwrap.dedent("""
    import sys
    from docedge.export.fp16 import add_fp16_artifact
    ops = [("ReduceMean", "Pow", "Sqrt", "ReduceL2"), ("ReduceMean", "Pow", "Sqrt")]
    i = 0
    while True:  # alternate two different fp16 files: every commit replaces a listed file
        add_fp16_artifact(sys.argv[1], keep_fp32_ops=ops[i % 2], min_cosine=0.0, mean_cosine=0.0)
        i += 1
""")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_an_unloadable_bundle(bundle_copy, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(_KILL_WORKER)
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, str(worker), str(bundle_copy)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(2.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        b = load_bundle(bundle_copy, verify=True)  # never a half-written state
        assert "fp32" in b.precisions
    assert kills == 6
    with BundleTransaction(bundle_copy):  # the next change cleans up after the kills
        pass
    listed = {a.file for a in load_bundle(bundle_copy).artifacts}
    stray = [p.name for p in bundle_copy.iterdir() if p.name.endswith(".staged")]
    assert not stray and "model_fp32.onnx" in listed


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(seeded_reference, tmp_path):
    from docedge.export.bundle_writer import export_bundle
    from docedge.export.fp16 import add_fp16_artifact

    old = os.umask(0o027)
    try:
        export_bundle(tmp_path / "b", reference=seeded_reference)
    finally:
        os.umask(old)
    for name in ("manifest.json", "model_fp32.onnx"):
        assert stat.S_IMODE((tmp_path / "b" / name).stat().st_mode) == 0o640, name
    os.chmod(tmp_path / "b" / "manifest.json", 0o644)
    add_fp16_artifact(tmp_path / "b", seeded_reference)
    assert stat.S_IMODE((tmp_path / "b" / "manifest.json").stat().st_mode) == 0o644
