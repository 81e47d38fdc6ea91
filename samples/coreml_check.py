"""Check a bundle's Core ML packages on a Mac (Core ML prediction needs macOS).

    pip install coremltools numpy
    python samples/coreml_check.py BUNDLE_DIR [--compute-units ALL|CPU_ONLY|CPU_AND_GPU|CPU_AND_NE]

For every ``coreml`` artifact of the bundle (``model_fp16.mlpackage.zip``,
``model_int8w.mlpackage.zip``) this script checks the zip's SHA-256 against ``manifest.json``,
unzips the package, loads it with ``coremltools.models.MLModel`` and runs the bundle's
pre-processing test vectors (``test_vectors.zip``: the exact float32 NCHW tensors docedge
feeds the model and the PyTorch reference's embeddings). It passes when the cosine to the
reference is >= 0.999 (fp16) / >= 0.97 (int8 weights) on every vector, the limits docedge's
conversion gate uses. docedge itself is not needed: only numpy and coremltools.

Exit status 0 when every package passes, 1 when one fails, 2 when it cannot run.
Not run here (docedge is developed on Linux, where Core ML cannot predict): please report
the output of ``--json`` (it includes the macOS version and the compute units).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

LIMITS = {"fp16": 0.999, "int8": 0.97, "fp32": 0.9999}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_vectors(bundle: Path) -> List[Dict[str, Any]]:
    """The test vectors: name, tensor (1, 3, 128, 128) float32, reference embedding (256,)."""
    with zipfile.ZipFile(bundle / "test_vectors.zip") as zf:
        index = json.loads(zf.read("test_vectors/index.json"))
        out = []
        for v in index["vectors"]:
            x = np.load(io.BytesIO(zf.read("test_vectors/" + v["tensor"])), allow_pickle=False)
            e = np.load(io.BytesIO(zf.read("test_vectors/" + v["embedding"])), allow_pickle=False)
            out.append({"name": v["name"], "tensor": x.astype(np.float32), "embedding": e})
    return out


def check_package(bundle: Path, rec: Dict[str, Any], vectors: List[Dict[str, Any]], units: str,
                  tmp: Path) -> Dict[str, Any]:  # fmt: skip
    import coremltools as ct

    zpath = bundle / rec["file"]
    result: Dict[str, Any] = {"file": rec["file"], "precision": rec["precision"]}
    if sha256(zpath) != rec["sha256"]:
        result.update(passed=False, problem="sha256 does not match manifest.json (file modified)")
        return result
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp)
    model = ct.models.MLModel(str(tmp / rec.get("package", rec["file"][:-4])),
                              compute_units=getattr(ct.ComputeUnit, units))  # fmt: skip
    cosines = {}
    for v in vectors:
        out = np.asarray(model.predict({"img": v["tensor"]})["feats"], np.float64).reshape(-1)
        ref = v["embedding"].astype(np.float64).reshape(-1)
        cosines[v["name"]] = float(out @ ref / (np.linalg.norm(out) * np.linalg.norm(ref)))
    limit = LIMITS.get(rec["precision"], 0.97)
    worst = min(cosines.values())
    result.update(cos_min=worst, cos_mean=float(np.mean(list(cosines.values()))), limit=limit,
                  passed=worst >= limit, per_vector=cosines)  # fmt: skip
    return result


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument(
        "--compute-units", default="ALL", choices=["ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"]
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if platform.system() != "Darwin":
        print("error: Core ML prediction needs macOS; run this on a Mac", file=sys.stderr)
        return 2
    try:
        manifest = json.loads((args.bundle / "manifest.json").read_text(encoding="utf-8"))
        vectors = load_vectors(args.bundle)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        print(f"error: {args.bundle}: cannot read the manifest or test_vectors.zip ({e})", file=sys.stderr)
        return 2
    packages = [a for a in manifest.get("artifacts", []) if a.get("format") == "coreml"]
    if not packages:
        print(f"error: {args.bundle}: no coreml artifacts (run `docedge convert --formats coreml`)",
              file=sys.stderr)  # fmt: skip
        return 2
    results = []
    for rec in packages:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(check_package(args.bundle, rec, vectors, args.compute_units, Path(tmp)))
    env = {"macos": platform.mac_ver()[0], "machine": platform.machine(), "compute_units": args.compute_units}
    if args.json:
        print(json.dumps({"environment": env, "results": results}, indent=2))
    else:
        for r in results:
            verdict = "PASS" if r.get("passed") else "FAIL"
            detail = (
                r.get("problem")
                or f"cos min {r['cos_min']:.6f} mean {r['cos_mean']:.6f} (limit {r['limit']})"
            )
            print(f"{r['file']:<28} {r['precision']:<5} {verdict}  {detail}")
        print(f"macOS {env['macos']} {env['machine']}, compute units {env['compute_units']}")
    return 0 if all(r.get("passed") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
