"""Accuracy parity: does every artifact decide like the PyTorch reference?

Every artifact of a bundle (each ONNX precision under each ONNX Runtime provider asked for,
and a TensorRT engine when one is cached and TensorRT runs here) embeds the same images,
pre-processed by the runtime's own code, and is compared with the reference at three levels:

- embeddings: cosine to the reference per image (min, p1, mean) and max abs difference;
- neighbours: the top-1 gallery entry is the reference's;
- decisions: same label, or "unknown" for both, at the bundle's operating point;

and, on labelled images (``DIR/<class>/*``), at the task level: TPR at every table FPR and
AUROC beside the reference's, with the deltas. Each check has a tolerance per precision
(:data:`DEFAULT_TOLERANCES`, overridable by a JSON/TOML config and by keyword); the run passes
when every check passes. JSON schema: ``docs/parity.md``.

The reference is the bundle's source model: the demo weights, the seeded random init, or a
checkpoint (its sha256 must match the manifest). Bundles imported from ONNX have no PyTorch
model: the fp32 ONNX artifact on the CPU provider is the reference, and the report says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from docedge.export.provenance import utc_now
from docedge.export.verify import agreement, cosine_rows
from docedge.runtime import __version__ as DOCEDGE_VERSION
from docedge.runtime.backends import create_backend
from docedge.runtime.bundle import Artifact, Bundle, load_bundle
from docedge.runtime.errors import (
    BackendUnavailableError,
    DocedgeError,
    FingerprintMismatchError,
    ImageError,
    ProviderUnavailableError,
    ThresholdError,
)
from docedge.runtime.preprocess import list_images, load_image, preprocess_bgr
from docedge.runtime.search import scores

from .ranking import ranking_deltas, ranking_metrics
from .roc import DEFAULT_FPRS
from .thresholds import (
    DEFAULT_MAX_IMPOSTORS,
    LabelledImages,
    fpr_key,
    table_from_embeddings,
)

logger = logging.getLogger(__name__)

SCHEMA_NAME = "docedge.parity"
SCHEMA_VERSION = 1

#: Every check a tolerance can set, with its comparison (value OP limit passes).
CHECKS: Dict[str, str] = {
    "cos_min": ">=",  # smallest per-image cosine to the reference
    "cos_p1": ">=",  # 1st percentile of the per-image cosine
    "cos_mean": ">=",  # mean per-image cosine
    "max_abs_diff": "<=",  # largest element-wise |artifact - reference|
    "neighbour_agreement": ">=",  # fraction of probes with the reference's top-1 entry
    "decision_agreement": ">=",  # fraction of probes with the reference's decision
    "tpr_drop_at_1e-2": "<=",  # reference TPR - artifact TPR at FPR 1e-2 (labelled images)
    "auroc_drop": "<=",  # reference AUROC - artifact AUROC (labelled images)
}

#: Default tolerances per precision (overridable by config file and keyword/flags).
DEFAULT_TOLERANCES: Dict[str, Dict[str, float]] = {
    "fp32": {"cos_min": 0.99999, "max_abs_diff": 1e-5, "decision_agreement": 0.999,
             "tpr_drop_at_1e-2": 0.01},
    "fp16": {"cos_min": 0.999, "cos_mean": 0.9995, "decision_agreement": 0.99,
             "tpr_drop_at_1e-2": 0.01},
    # int8: the export gate's worst-image cosine (0.97 on its 64 synthetic captures) is not a
    # default here: on other data single images fall lower (demo model, real-looking captures:
    # 0.96) while the mean, the decisions and TPR hold. Every report says that this check is
    # looser than at export (``looser_than_export``); ``--tol int8.cos_min=0.97`` restores it.
    "int8": {"cos_mean": 0.99, "decision_agreement": 0.97, "tpr_drop_at_1e-2": 0.01},
    # bf16 (the OpenVINO IR): its conversion gate, fp16's limits (whether it borrows fp32's
    # threshold table is decided on its gate cosine min, not here: the table it uses is named in
    # each report's threshold_source)
    "bf16": {"cos_min": 0.999, "cos_mean": 0.9995, "decision_agreement": 0.98,
             "tpr_drop_at_1e-2": 0.01},
}
#: Precisions a tolerance may name: the ONNX precisions and bf16 (OpenVINO IR only).
TOLERANCE_PRECISIONS = ("fp32", "fp16", "int8", "bf16")


def export_gates() -> Dict[str, Dict[str, float]]:
    """The gates each precision passed at export/calibration (parity defaults are never looser)."""
    from docedge.export.gates import (
        FP16_MEAN_COSINE,
        FP16_MIN_COSINE,
        FP32_MAX_ABS_DIFF,
        FP32_MIN_COSINE,
    )

    from .int8 import INT8_MEAN_COSINE, INT8_MIN_COSINE

    # bf16's gate (docedge.export.formats.openvino.BF16_GATE) is fp16's limits; the converter
    # module is not imported: it would pull the formats package into every parity run
    return {"fp32": {"cos_min": FP32_MIN_COSINE, "max_abs_diff": FP32_MAX_ABS_DIFF},
            "fp16": {"cos_min": FP16_MIN_COSINE, "cos_mean": FP16_MEAN_COSINE},
            "int8": {"cos_min": INT8_MIN_COSINE, "cos_mean": INT8_MEAN_COSINE},
            "bf16": {"cos_min": FP16_MIN_COSINE, "cos_mean": FP16_MEAN_COSINE}}  # fmt: skip


def looser_than_export(tol: Dict[str, Dict[str, Any]]) -> List[str]:
    """One line per tolerance looser than (or switched off against) the export gate."""
    out = []
    for prec, gates in export_gates().items():
        for check, gate in gates.items():
            have: Any = tol.get(prec, {}).get(check, "missing") if prec in tol else "missing"
            upper = check == "max_abs_diff"
            if have is None or have == "missing":
                out.append(f"{prec}.{check} is not checked (export gate: {gate:g})")
            elif (have > gate) if upper else (have < gate):
                out.append(f"{prec}.{check} limit {have:g} is looser than the export gate {gate:g}")
    return out

#: At most this many disagreeing probes are listed per artifact in the JSON.
MAX_EXAMPLES = 10

Tolerances = Dict[str, Dict[str, float]]


# --- tolerances -------------------------------------------------------------------------------
def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse a tolerance config: TOML when the name ends in ``.toml``, else JSON.

    Layout: ``{"fp16": {"cos_min": 0.998}, "int8": {"decision_agreement": null}}`` (JSON) or
    ``[fp16]`` / ``cos_min = 0.998`` tables (TOML); the same may sit under a top-level
    ``tolerances`` key. TOML needs Python 3.11 (``tomllib``) or the ``tomli`` package.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DocedgeError(f"{p}: cannot read parity config ({e})") from None
    if p.suffix.lower() == ".toml":
        try:
            import tomllib as toml  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # Python < 3.11
            try:
                import tomli as toml  # type: ignore[import-not-found,no-redef,unused-ignore]
            except ImportError:
                raise DocedgeError(
                    f"{p}: TOML configs need Python >= 3.11 or the tomli package; "
                    "or write the config as JSON"
                ) from None
        try:
            data: Any = toml.loads(text)
        except Exception as e:  # tomllib.TOMLDecodeError (module-specific type)
            raise DocedgeError(f"{p}: not valid TOML ({e})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DocedgeError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DocedgeError(f"{p}: a parity config is an object of precision -> checks")
    inner = data.get("tolerances", data)
    if not isinstance(inner, dict):
        raise DocedgeError(f"{p}: 'tolerances' must be an object of precision -> checks")
    return inner


def load_tolerances(
    config: Optional[Union[str, Path]] = None,
    overrides: Optional[Dict[str, Dict[str, Any]]] = None,
) -> Tolerances:
    """Defaults, then a config file (:func:`read_config`), then ``overrides``.

    A value of ``None``/``null`` or ``"off"`` removes that check for that precision. Unknown
    precisions or check names are errors (a typo must not silently disable a check).
    """
    tol: Tolerances = {p: dict(v) for p, v in DEFAULT_TOLERANCES.items()}
    layers: List[Tuple[str, Dict[str, Any]]] = []
    if config is not None:
        layers.append((str(config), read_config(config)))
    layers.append(("overrides", overrides or {}))
    for where, layer in layers:
        for prec, values in layer.items():
            if prec not in TOLERANCE_PRECISIONS:
                raise DocedgeError(f"{where}: unknown precision {prec!r} in tolerances "
                                   f"(known: {', '.join(TOLERANCE_PRECISIONS)})")  # fmt: skip
            if not isinstance(values, dict):
                raise DocedgeError(f"{where}: tolerances for {prec} must be check -> limit")
            for key, v in values.items():
                if key not in CHECKS:
                    raise DocedgeError(f"{where}: unknown check {key!r} for {prec} "
                                       f"(known: {', '.join(CHECKS)})")  # fmt: skip
                if v is None or (isinstance(v, str) and v.lower() == "off"):
                    tol.setdefault(prec, {}).pop(key, None)
                    continue
                try:
                    tol.setdefault(prec, {})[key] = float(v)
                except (TypeError, ValueError):
                    raise DocedgeError(f"{where}: {prec}.{key} = {v!r} is not a number") from None
    return tol


# --- result -----------------------------------------------------------------------------------
@dataclass
class ParityResult:
    """Outcome of :func:`run_parity`; :meth:`to_json` follows the documented schema.

    ``raw`` keeps the arrays the plots need (not serialized): ``inputs`` ``(N, 3, 128, 128)``
    float32 pre-processed images, ``reference`` ``(N, D)`` embeddings, ``reference_scores``
    ``(genuine, impostor)`` score arrays or None, and per artifact name ``embeddings``,
    ``cosine`` ``(N,)`` and ``scores``.
    """

    bundle: str
    images: int
    labelled: bool
    reference: str
    images_dir: str = ""
    images_sha256: str = ""
    classes: Optional[int] = None
    reference_source: Dict[str, Any] = field(default_factory=dict)
    gallery: Dict[str, Any] = field(default_factory=dict)
    operating_point: Dict[str, Any] = field(default_factory=dict)
    artifacts: List[Dict[str, Any]] = field(default_factory=list)
    reference_metrics: Dict[str, Any] = field(default_factory=dict)
    skipped: List[Dict[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: Failures of the run as a whole (e.g. nothing could be compared).
    run_failures: List[str] = field(default_factory=list)
    tolerances: Tolerances = field(default_factory=dict)
    created: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def failures(self) -> List[str]:
        """One line per failing check: ``"<artifact>: <check> <value> vs <op> <limit>"``."""
        out = list(self.run_failures)
        for a in self.artifacts:
            if a.get("error"):
                out.append(f"{a['name']}: unavailable ({a['error']})")
            for c in a["checks"]:
                if c["passed"] is False:
                    out.append(f"{a['name']}: {c['check']} {c['value']:.6g} vs "
                               f"{c['op']} {c['limit']:g}")  # fmt: skip
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> Dict[str, Any]:
        """The result as plain JSON types (schema ``docedge.parity`` version 1)."""
        return {
            "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION,
            "created": self.created, "docedge_version": DOCEDGE_VERSION,
            "bundle": self.bundle, "images_dir": self.images_dir,
            "images_sha256": self.images_sha256, "images": self.images,
            "labelled": self.labelled, "classes": self.classes,
            "reference": self.reference, "reference_source": self.reference_source,
            "gallery": self.gallery, "operating_point": self.operating_point,
            "passed": self.passed, "failures": self.failures, "tolerances": self.tolerances,
            "reference_metrics": self.reference_metrics, "artifacts": self.artifacts,
            "skipped": self.skipped, "notes": self.notes, "environment": environment(),
        }  # fmt: skip


def environment() -> Dict[str, Any]:
    """Who verified: versions, the command line, the machine (recorded in every report)."""
    import platform
    import sys

    from docedge.export.provenance import library_version

    return {"docedge": DOCEDGE_VERSION, "python": platform.python_version(),
            "onnxruntime": library_version("onnxruntime"), "numpy": np.__version__,
            "torch": library_version("torch"), "platform": platform.platform(),
            "machine": platform.machine(), "command": list(sys.argv)}  # fmt: skip


# --- inputs -----------------------------------------------------------------------------------
def scan_images(images_dir: Union[str, Path]) -> Tuple[List[Path], Optional[List[str]], str]:
    """Images, their class labels (or None) and the set's SHA-256.

    Labelled when ``images_dir`` has at least two sub-folders with images: the label is the
    sub-folder name (images directly in ``images_dir`` are then ignored, with a warning).
    Otherwise every image under ``images_dir`` counts, unlabelled.
    """
    from .calib_data import ImageSet

    root = Path(images_dir)
    if not root.is_dir():
        raise DocedgeError(f"{root}: image folder not found")
    try:
        data = LabelledImages.scan(root)
    except DocedgeError:
        files = list_images(root)
        if not files:
            raise ImageError(str(root), "no .jpg/.jpeg/.png images found") from None
        return files, None, ImageSet.scan(root).sha256
    listed = set(list_images(root))
    loose = [p for p in root.iterdir() if p in listed]
    if loose:
        logger.warning("parity: %d images directly in %s ignored (labelled by sub-folder)",
                       len(loose), root)  # fmt: skip
    return data.paths, data.labels, data.sha256


def _load(paths: Sequence[Path], bundle: Bundle) -> Tuple[np.ndarray, List[int]]:
    """Pre-processed float32 ``(n, 3, H, W)`` of the readable images, and their indices."""
    xs, keep = [], []
    for i, p in enumerate(paths):
        try:
            xs.append(preprocess_bgr(load_image(str(p), i), bundle.preprocess))
            keep.append(i)
        except ImageError as e:
            logger.warning("parity: skipping %s", e)
    shape = (0, 3, bundle.preprocess.height, bundle.preprocess.width)
    return (np.stack(xs) if xs else np.zeros(shape, np.float32)), keep


def _embed(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int, desc: str,
           progress: bool) -> np.ndarray:  # fmt: skip
    """``fn`` over ``x`` in batches of ``batch`` (a tqdm bar on a terminal), float32 ``(N, D)``."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(x), desc=desc, unit="img", disable=None if progress else True,
              leave=False) as bar:  # fmt: skip
        for i in range(0, len(x), batch):
            out.append(np.asarray(fn(x[i : i + batch]), np.float32))
            bar.update(min(batch, len(x) - i))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


_REFERENCE_CACHE: Dict[str, Any] = {}


def resolve_reference(bundle: Bundle, checkpoint: Optional[Union[str, Path]] = None,
                      random_init_seed: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:  # fmt: skip
    """The bundle's PyTorch reference network (or None for imported ONNX) and its source.

    Demo weights and seeded inits are rebuilt from the manifest (and cached for this process:
    they are deterministic); a checkpoint bundle needs ``checkpoint`` with the recorded
    sha256; ``random_init_seed`` must name the seed the bundle was exported from.
    """
    src = dict(bundle.model.get("source", {}))
    if src.get("kind") == "onnx" and checkpoint is None and random_init_seed is None:
        return None, src  # imported: no PyTorch model (and no need for torch here)
    from docedge.export.checkpoint import CheckpointError
    from docedge.export.reference import reference_for_bundle

    if random_init_seed is not None and (src.get("kind") != "random-init"
                                         or src.get("seed") != random_init_seed):  # fmt: skip
        # refuse before building a network that cannot match (the sha256 check would)
        made = f"seed {src.get('seed')}" if src.get("kind") == "random-init" else src.get("kind")
        raise CheckpointError(f"the given reference (random init, seed {random_init_seed}) is "
                              f"not the bundle's source ({made})")  # fmt: skip
    key = _cache_key(bundle)
    if checkpoint is None and key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key], src
    ref = reference_for_bundle(bundle.model, checkpoint, random_init_seed)
    if ref is None:
        return None, src
    if checkpoint is None:
        _REFERENCE_CACHE[key] = ref.net
    return ref.net, dict(ref.source)


def _cache_key(bundle: Bundle) -> str:
    return json.dumps(bundle.model.get("source", {}), sort_keys=True, default=str)


def cache_reference(bundle: Bundle, reference: Any) -> None:
    """Remember an already-built reference (a ``ReferenceModel`` or its ``net``) of this
    bundle's source for later runs in this process (notebooks, test suites): seeded
    references take seconds to rebuild. The caller vouches that it is the bundle's source."""
    _REFERENCE_CACHE[_cache_key(bundle)] = getattr(reference, "net", reference)


def _describe_reference(src: Dict[str, Any], net: Any) -> str:
    kind = src.get("kind", "?")
    if net is None:
        return "onnx fp32 artifact on the CPU provider (imported bundle: no PyTorch reference)"
    if kind == "random-init":
        return f"pytorch (random-init, seed {src.get('seed')})"
    if kind == "checkpoint":
        return f"pytorch (checkpoint {src.get('file')})"
    return f"pytorch ({kind})"


# --- gallery and decisions ---------------------------------------------------------------------
@dataclass
class GalleryPlan:
    """Which rows are probes and what they are matched against.

    ``mode``: ``exemplars`` (labelled images: the first image of each class is its exemplar,
    the others probes), ``leave-one-out`` (unlabelled: every image against all the others),
    ``register-folder`` (a DocClassifier register folder, embedded by every artifact) or
    ``gallery-file`` (a docedge gallery: fixed embeddings, as registered on a device).
    ``entry_rows``: rows of the embedded inputs that are gallery entries (None for a file);
    ``fixed``: the file's float32 ``(G, D)`` embeddings; ``entry_label``: label index per
    entry ``(G,)``; ``label_names``: distinct labels.
    """

    mode: str
    probe_rows: np.ndarray
    entry_rows: Optional[np.ndarray]
    fixed: Optional[np.ndarray]
    entry_label: np.ndarray
    label_names: List[str]
    info: Dict[str, Any] = field(default_factory=dict)


def decide(probes: np.ndarray, entries: np.ndarray, entry_label: np.ndarray,
           label_names: Sequence[str], threshold: float, exclude_self: bool = False
           ) -> Tuple[np.ndarray, List[Optional[str]], np.ndarray]:  # fmt: skip
    """The classifier's rule on embeddings: best entry wins, matched when ``score > threshold``.

    ``probes`` ``(Q, D)`` and ``entries`` ``(G, D)`` unit vectors; scores ``(cos+1)/2`` in
    float32 by :func:`docedge.runtime.search.scores` (the classifier's code). With
    ``exclude_self`` (leave-one-out, ``probes is entries``) a probe never matches itself.
    Returns the top-1 entry index ``(Q,)``, the decided label per probe (None = unknown) and
    the best score ``(Q,)``.
    """
    s = scores(probes, entries)
    if exclude_self:
        np.fill_diagonal(s, -np.inf)
    best = s.argmax(1)
    top = s[np.arange(len(s)), best]
    labels = [label_names[entry_label[b]] if t > threshold else None for b, t in zip(best, top)]
    return best, labels, top


def decision_agreement(a: Sequence[Optional[str]], b: Sequence[Optional[str]]) -> float:
    """Fraction of positions where two decision lists agree (same label, or both unknown)."""
    if len(a) != len(b):
        raise ValueError(f"decision lists differ in length ({len(a)} vs {len(b)})")
    if not a:
        return 1.0
    return float(np.mean([x == y for x, y in zip(a, b)]))


def _plan(n_images: int, labels: Optional[List[str]], names: List[str],
          gallery: Optional[Path], bundle: Bundle, n_register: int,
          register_labels: List[str]) -> GalleryPlan:  # fmt: skip
    def index(lbls: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
        distinct = list(dict.fromkeys(lbls))
        pos = {lbl: i for i, lbl in enumerate(distinct)}
        return np.array([pos[lbl] for lbl in lbls], np.int64), distinct

    if gallery is not None and n_register:
        ids, distinct = index(register_labels)
        rows = np.arange(n_images, n_images + n_register)
        return GalleryPlan("register-folder", np.arange(n_images), rows, None, ids, distinct,
                           {"path": str(gallery), "entries": n_register,
                            "labels": len(distinct)})  # fmt: skip
    if gallery is not None:
        from docedge.runtime.gallery import Gallery

        g = Gallery.open(gallery, verify=True)
        fp, mine = g.fingerprint, bundle.fingerprint("fp32")
        for k in ("model_sha256", "preprocess"):
            if fp.get(k) != mine.get(k):
                raise FingerprintMismatchError(
                    f"{gallery}: made with another model or pre-processing ({k} differs)")
        if len(g) == 0:
            raise DocedgeError(f"{gallery}: the gallery is empty")
        fixed = np.asarray(g.embeddings, np.float32)
        return GalleryPlan("gallery-file", np.arange(n_images), None, fixed, g.label_ids(),
                           g.labels, {"path": str(gallery), "entries": len(g),
                                      "labels": len(g.labels),
                                      "precision": fp.get("precision")})  # fmt: skip
    if labels:
        first: Dict[str, int] = {}
        for i, lbl in enumerate(labels):
            first.setdefault(lbl, i)
        entry_rows = np.array(sorted(first.values()), np.int64)
        exemplar = set(entry_rows.tolist())
        probes = np.array([i for i in range(n_images) if i not in exemplar], np.int64)
        if probes.size == 0:
            raise DocedgeError("labelled images need at least two images in some class "
                               "(the first of each class is its exemplar)")  # fmt: skip
        ids, distinct = index([labels[i] for i in entry_rows])
        return GalleryPlan("exemplars", probes, entry_rows, None, ids, distinct,
                           {"entries": int(entry_rows.size), "labels": len(distinct)})
    rows = np.arange(n_images)
    ids, distinct = index(names)
    return GalleryPlan("leave-one-out", rows, rows, None, ids, distinct,
                       {"entries": n_images, "labels": len(distinct)})


# --- the run ----------------------------------------------------------------------------------
def run_parity(
    bundle_dir: Union[str, Path],
    images_dir: Union[str, Path],
    checkpoint: Optional[Union[str, Path]] = None,
    random_init_seed: Optional[int] = None,
    precisions: Optional[Sequence[str]] = None,
    providers: Sequence[str] = ("cpu",),
    tensorrt: bool = True,
    tolerances: Optional[Tolerances] = None,
    fpr: float = 1e-2,
    threshold: Optional[float] = None,
    gallery: Optional[Union[str, Path]] = None,
    max_impostors: Optional[int] = DEFAULT_MAX_IMPOSTORS,
    batch_size: int = 32,
    progress: bool = True,
    reference: Optional[Any] = None,
    reference_bundle: Optional[Union[str, Path]] = None,
) -> ParityResult:
    """Compare every artifact of the bundle with the reference on the images of ``images_dir``.

    ``precisions``: ONNX precisions to test (default: all in the bundle); ``providers``: ONNX
    Runtime providers, each tried for every precision (one that cannot load is a failing
    check, never a silent CPU run); ``tensorrt``: also try a cached TensorRT engine per
    precision (skipped with the reason when none can run here). ``fpr``: the operating point
    (table row) for decisions; ``threshold`` overrides the tables. ``gallery``: a docedge
    gallery file or a register folder (default: built from the images). ``tolerances``: see
    :func:`load_tolerances`. ``reference``: an already-loaded reference (a
    :class:`~docedge.export.reference.ReferenceModel` or its ``net``) of this bundle's source,
    instead of rebuilding it. ``reference_bundle``: compare against another bundle's fp32
    artifact instead (``docedge compare``: a new release against the last one, or a bundle
    against an imported released ONNX file); its pre-processing and I/O must be the same.
    Raises :class:`DocedgeError` for unusable inputs.
    """
    bundle = load_bundle(bundle_dir)
    for prec in precisions or ():
        if bundle.ir_artifact(prec) is None:  # a precision the bundle lacks is an input error
            bundle.artifact(prec, "onnx")
    tol = tolerances if tolerances is not None else load_tolerances()
    paths, labels, data_sha = scan_images(images_dir)
    x, keep = _load(paths, bundle)
    if len(keep) < 2:
        raise DocedgeError(f"{images_dir}: need at least two readable images")
    paths = [paths[i] for i in keep]
    labels = [labels[i] for i in keep] if labels else None
    names = [p.relative_to(Path(images_dir)).as_posix() for p in paths]
    n = len(paths)

    # A register folder: its images join the inputs (each artifact embeds them).
    reg_labels: List[str] = []
    if gallery is not None and Path(gallery).is_dir():
        from docedge.runtime.register import scan_register

        reg = scan_register(gallery)
        xr, rkeep = _load([p for _, p in reg], bundle)
        if not rkeep:
            raise DocedgeError(f"{gallery}: no readable images in the register folder")
        reg_labels = [reg[i][0] for i in rkeep]
        x = np.concatenate([x, xr])
    plan = _plan(n, labels, names, Path(gallery) if gallery is not None else None, bundle,
                 len(reg_labels), reg_labels)  # fmt: skip

    ref_bundle = None
    if reference_bundle is not None:
        ref_bundle = load_bundle(reference_bundle)
        _same_interface(ref_bundle, bundle)
        net, src = None, dict(ref_bundle.model.get("source", {}))
        ref_name = (f"bundle {ref_bundle.path} fp32 ({ref_bundle.model.get('name')}, artifact "
                    f"sha256 {ref_bundle.artifact('fp32').sha256[:12]}...)")  # fmt: skip
    elif reference is not None:
        net, src = getattr(reference, "net", reference), dict(bundle.model.get("source", {}))
        ref_name = _describe_reference(src, net)
    else:
        net, src = resolve_reference(bundle, checkpoint, random_init_seed)
        ref_name = _describe_reference(src, net)
    if net is not None:
        from docedge.export.gates import torch_embed

        ref_all = _embed(lambda b: torch_embed(net, b), x, batch_size, "reference", progress)
    else:  # another bundle's fp32 (compare), or this bundle's own (an imported ONNX file)
        ref_backend = create_backend(ref_bundle or bundle, "fp32", "onnxruntime", providers=["cpu"])
        try:
            ref_all = _embed(ref_backend.run, x, ref_backend.max_batch or batch_size, "reference",
                             progress)  # fmt: skip
        finally:
            ref_backend.close()

    result = ParityResult(
        bundle=str(bundle.path), images=n, labelled=bool(labels), reference=ref_name,
        images_dir=str(images_dir), images_sha256=data_sha,
        classes=len(set(labels)) if labels else None, reference_source=src,
        gallery={"mode": plan.mode, **plan.info}, tolerances=tol, created=utc_now(),
        operating_point={"fpr": None if threshold is not None else fpr, "threshold": threshold},
    )  # fmt: skip
    if ref_bundle is not None:
        result.notes.append(f"comparison: the reference is another bundle ({ref_bundle.path}), "
                            "not a PyTorch model")  # fmt: skip
    elif net is None:
        result.notes.append("imported ONNX bundle: no PyTorch model exists; the fp32 ONNX "
                            "artifact on the CPU provider is the reference")  # fmt: skip

    def task_metrics(emb: np.ndarray) -> Dict[str, Any]:
        if not labels:
            return {}
        t = table_from_embeddings(emb[:n], labels, DEFAULT_FPRS, max_impostors=max_impostors)
        return {"rows": t["rows"], "auroc": t["auroc"], "pairs": t["pairs"],
                "scores": (t["genuine"], t["impostor"])}  # fmt: skip

    def level_decisions(emb: np.ndarray, thr: float) -> Tuple[np.ndarray, List[Optional[str]],
                                                                np.ndarray]:  # fmt: skip
        probes = emb[plan.probe_rows]
        if plan.mode == "leave-one-out":
            return decide(probes, probes, plan.entry_label, plan.label_names, thr, True)
        entries = plan.fixed if plan.fixed is not None else emb[plan.entry_rows]
        return decide(probes, entries, plan.entry_label, plan.label_names, thr)

    ref_task = task_metrics(ref_all)
    ref_thr, ref_thr_src = _threshold(bundle, "fp32", fpr, threshold, ref_task)
    ref_nn, ref_dec, ref_top = level_decisions(ref_all, ref_thr)
    rm: Dict[str, Any] = {"threshold": ref_thr, "threshold_source": ref_thr_src,
                          "unknown_rate": _unknown_rate(ref_dec)}  # fmt: skip
    if labels:
        rm.update(_task_json(ref_task))
        rm["ranking"] = ranking_metrics(ref_all[:n], labels)
        gt = [labels[i] for i in plan.probe_rows] if plan.mode == "exemplars" else None
        if gt is not None:
            rm["top1_accuracy"] = float(np.mean([d == g for d, g in zip(ref_dec, gt)]))
    result.reference_metrics = rm
    result.raw = {"inputs": x[:n], "reference": ref_all[:n],
                  "reference_scores": ref_task.get("scores"), "artifacts": {}}  # fmt: skip

    runs: List[Tuple[str, str, str, Dict[str, Any]]] = []
    for prec in [p for p in precisions or bundle.precisions if p in bundle.precisions]:
        for prov in providers:
            runs.append((f"{prec}/onnxruntime-{prov}", prec, "onnxruntime", {"providers": [prov]}))
        if tensorrt:
            runs.append((f"{prec}/tensorrt", prec, "tensorrt", {}))
    # Converted mobile/edge artifacts (ORT Mobile, LiteRT, ncnn, fixed-shape ONNX; Core ML is
    # listed as skipped: it needs macOS), run the way their conversion gate ran them.
    mobile = _mobile_runs(bundle, precisions)
    for name, mrec, _factory in mobile:
        runs.append((name, str(mrec["precision"]), "mobile", {"record": mrec}))
    factories = {name: factory for name, _mrec, factory in mobile}
    backend: Any
    for name, prec, backend_name, opts in runs:
        if (net is None and ref_bundle is None and prec == "fp32"
                and opts.get("providers") == ["cpu"]):  # fmt: skip
            result.skipped.append({"name": name, "reason": "is the reference (imported bundle)"})
            continue
        try:
            if backend_name == "mobile":
                from docedge.export.formats.run import MobileBackend

                backend = MobileBackend.from_factory(name, opts["record"], factories[name])
            else:
                backend = create_backend(bundle, prec, backend_name, **opts)
        except ProviderUnavailableError as e:  # asked for explicitly: a failure, not a skip
            result.artifacts.append({"name": name, "precision": prec, "backend": backend_name,
                                     "error": str(e).splitlines()[0], "checks": []})  # fmt: skip
            continue
        except (BackendUnavailableError, ImportError) as e:
            skip = {"name": name, "reason": str(e).splitlines()[0]}
            fmt = opts["record"].get("format") if backend_name == "mobile" else None
            if fmt == "openvino":  # not run: say so, and what to install to run it
                skip["reason"] = "not run: " + skip["reason"].replace(" not run: ", " ")
                if "pip install" in skip["reason"]:
                    skip["extra"] = "openvino"
            result.skipped.append(skip)
            continue
        try:
            desc = backend.describe()
            emb = _embed(backend.run, x, backend.max_batch or batch_size, name, progress)
        finally:
            backend.close()
        agree = agreement(ref_all[:n], emb[:n])
        task = task_metrics(emb)
        art = _artifact_of(bundle, prec, opts.get("record"))
        thr, thr_src = _threshold(bundle, prec, fpr, threshold, task, art)
        if "no usable" in thr_src:
            how = f" --backend {art.format}" if art.format == "openvino" else ""
            result.notes.append(f"{name}: borrows the fp32 threshold ({thr_src}); a device "
                                f"running {prec} needs its own table: docedge calibrate "
                                f"thresholds BUNDLE --images DIR --precision {prec}{how}")  # fmt: skip
        stale = _stale_table(bundle, prec, art)
        if stale and threshold is None:
            result.notes.append(f"{name}: {stale}")
        nn, dec, top = level_decisions(emb, thr)
        rec: Dict[str, Any] = {
            "name": name, "precision": prec, "backend": backend_name,
            "providers": list(desc.get("providers", [])) or None,
            "artifact": {"file": art.file, "sha256": art.sha256, "format": art.format},
            "embedding": agree.to_dict(),
            "worst_images": _worst(cosine_rows(ref_all[:n], emb[:n]), names),
            "neighbour_agreement": float(np.mean(nn == ref_nn)),
            "decision_agreement": decision_agreement(dec, ref_dec),
            "threshold": thr, "threshold_source": thr_src,
            "unknown_rate": _unknown_rate(dec),
            "disagreements": _examples(dec, ref_dec, top, ref_top,
                                       [names[i] if i < n else "" for i in plan.probe_rows]),
        }  # fmt: skip
        if labels:
            rec.update(_task_json(task))
            rec["tpr_delta"] = {k: _delta(v, rm["tpr_at_fpr"].get(k))
                                for k, v in rec["tpr_at_fpr"].items()}  # fmt: skip
            rec["auroc_delta"] = task["auroc"] - ref_task["auroc"]
            rec["ranking"] = ranking_metrics(emb[:n], labels)
            rec["ranking_delta"] = ranking_deltas(rec["ranking"], rm["ranking"])
        rec["checks"] = _checks(rec, tol.get(prec, {}), labels is not None)
        rec["passed"] = all(c["passed"] is not False for c in rec["checks"])
        result.artifacts.append(rec)
        result.raw["artifacts"][name] = {"embeddings": emb[:n],
                                         "cosine": cosine_rows(ref_all[:n], emb[:n]),
                                         "scores": task.get("scores")}  # fmt: skip
        logger.info("parity %s: cos min %.6f mean %.6f, decisions %.4f", name, agree.cos_min,
                    agree.cos_mean, rec["decision_agreement"])  # fmt: skip
    if not result.artifacts:  # exit 0 must mean that something was verified
        result.run_failures.append("nothing compared: no artifact could run here (see skipped)")
    tested = {a["precision"] for a in result.artifacts}
    for line in looser_than_export({p: t for p, t in tol.items() if p in tested}):
        result.notes.append(f"tolerance looser than at export: {line}")
    for a in result.artifacts:
        for c in a["checks"]:
            if c["passed"] is None:
                result.notes.append(f"{a['name']}: {c['check']} not evaluated ({c['note']})")
    return result


#: Formats of converted artifacts parity runs beside the main ONNX files.
CONVERTED_FORMATS = ("ort", "tflite", "ncnn", "coreml", "openvino")


def _mobile_runs(bundle: Bundle, precisions: Optional[Sequence[str]]) -> List[Any]:
    """The bundle's converted artifacts of ``precisions`` (default: every precision, the IR-only
    bf16 included), none when export.formats cannot be imported here."""
    if not any(a.format in CONVERTED_FORMATS or a.record.get("variant") for a in bundle.artifacts):
        return []
    try:
        from docedge.export.formats.run import mobile_runs
    except ImportError:
        return []
    runs = mobile_runs(bundle)
    want = set(precisions or [*bundle.precisions, *(str(r[1].get("precision")) for r in runs)])
    return [r for r in runs if r[1].get("precision") in want]


def _worst(cos: np.ndarray, names: Sequence[str], k: int = 5) -> List[Dict[str, Any]]:
    """The ``k`` images whose embedding is farthest from the reference's (lowest cosine)."""
    order = np.argsort(cos, kind="stable")[:k]
    return [{"image": names[i], "cosine": float(cos[i])} for i in order]


def _same_interface(a: Bundle, b: Bundle) -> None:
    """Two bundles compared image by image must read images the same way."""
    diffs = [k for k in ("preprocess", "io") if a.manifest.get(k) != b.manifest.get(k)]
    if diffs:
        detail = "; ".join(f"{k}: {a.manifest.get(k)} vs {b.manifest.get(k)}" for k in diffs)
        raise DocedgeError(f"{a.path} and {b.path} differ in {', '.join(diffs)} ({detail}); "
                           "their embeddings cannot be compared image by image")  # fmt: skip


def _task_json(task: Dict[str, Any]) -> Dict[str, Any]:
    return {"tpr_at_fpr": {fpr_key(r["fpr"]): r["tpr"] for r in task["rows"]},
            "table": task["rows"], "auroc": task["auroc"], "pairs": task["pairs"]}  # fmt: skip


def _unknown_rate(dec: Sequence[Optional[str]]) -> float:
    return float(np.mean([d is None for d in dec])) if dec else 0.0


def _examples(dec: Sequence[Optional[str]], ref_dec: Sequence[Optional[str]], top: np.ndarray,
              ref_top: np.ndarray, names: Sequence[str]) -> Dict[str, Any]:  # fmt: skip
    idx = [i for i, (a, b) in enumerate(zip(dec, ref_dec)) if a != b]
    return {"count": len(idx), "probes": len(dec), "examples": [
        {"image": names[i], "reference": ref_dec[i], "reference_score": float(ref_top[i]),
         "artifact": dec[i], "artifact_score": float(top[i])} for i in idx[:MAX_EXAMPLES]]}


def _delta(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _artifact_of(bundle: Bundle, precision: str, record: Optional[Dict[str, Any]]) -> Artifact:
    """The artifact a run embeds with: a converted artifact's record, else the ONNX file."""
    if record is not None:
        return Artifact.from_record(record)
    return bundle.artifact(precision, "onnx")


def _threshold(bundle: Bundle, precision: str, fpr: float, explicit: Optional[float],
               task: Dict[str, Any], artifact: Optional[Artifact] = None) -> Tuple[float, str]:  # fmt: skip
    """The operating point for ``precision`` and where it came from.

    An explicit threshold wins; then the bundle's own table for the precision at ``fpr`` (what
    the device uses: for an OpenVINO IR its own table, ``int8/openvino``, or fp32's where its
    record borrows it, as the runtime's Classifier decides); then the fp32 table (stated: the
    device would refuse to run without a table of its own); then the threshold at ``fpr``
    measured on these labelled images; last 0.5 (cos = 0), stated.
    """
    from docedge.runtime.thresholds import bundle_operating_point, operating_point, table_key

    if explicit is not None:
        return operating_point(None, None, explicit).threshold, "explicit"
    if artifact is not None and artifact.format == "openvino":
        try:
            op = bundle_operating_point(bundle, precision, fpr, None, artifact=artifact)
            if op.source == "table":
                return op.threshold, f"bundle table {table_key(artifact)} at FPR {fpr_key(fpr)}"
            return op.threshold, f"bundle table fp32 at FPR {fpr_key(fpr)} ({op.source})"
        except ThresholdError as e:
            logger.info("parity: %s", e)
    for prec in dict.fromkeys((precision, "fp32")):
        if prec == precision and artifact is not None and artifact.format == "openvino":
            continue  # the ONNX table of the precision is another artifact's
        table = bundle.thresholds(prec)
        if not table:
            continue
        try:
            t = operating_point(table, fpr, where=f"{prec} table").threshold
        except ThresholdError as e:
            logger.warning("parity: %s", e)
            continue
        if prec == precision:
            return t, f"bundle table {prec} at FPR {fpr_key(fpr)}"
        return t, f"bundle table fp32 at FPR {fpr_key(fpr)} (no usable {precision} table)"
    if "rows" in task:
        from .roc import tpr_at_fpr_table

        gen, imp = task["scores"]
        row = tpr_at_fpr_table(gen, imp, fprs=[fpr])[0]
        if row["threshold"] is not None:
            return float(row["threshold"]), f"measured at FPR {fpr_key(fpr)} on these images"
    return 0.5, "default 0.5 (no table, too few labelled pairs)"


def _stale_table(bundle: Bundle, precision: str, artifact: Optional[Artifact] = None) -> Optional[str]:
    """Why the precision's threshold table may not fit its artifact (None when it does)."""
    from docedge.runtime.thresholds import table_key

    art = artifact if artifact is not None and artifact.format == "openvino" else None
    table = bundle.thresholds(table_key(art) if art is not None else precision) or {}
    recorded = (table.get("source") or {}).get("artifact_sha256")
    current = art.sha256 if art is not None else bundle.artifact(precision, "onnx").sha256
    if recorded and recorded != current:
        return (f"the {precision} threshold table was calibrated on another artifact "
                f"(sha256 {recorded[:12]}..., now {current[:12]}...): recalibrate it")
    return None


def _checks(rec: Dict[str, Any], tol: Dict[str, float], labelled: bool) -> List[Dict[str, Any]]:
    """One entry per tolerance: ``check, value, op, limit, passed`` (None: not evaluated,
    with ``note``)."""
    values: Dict[str, Optional[float]] = {
        "cos_min": rec["embedding"]["cos_min"], "cos_p1": rec["embedding"]["cos_p1"],
        "cos_mean": rec["embedding"]["cos_mean"],
        "max_abs_diff": rec["embedding"]["max_abs_diff"],
        "neighbour_agreement": rec["neighbour_agreement"],
        "decision_agreement": rec["decision_agreement"],
    }  # fmt: skip
    notes: Dict[str, str] = {}
    if labelled:
        d = rec["tpr_delta"].get("1e-2")
        values["tpr_drop_at_1e-2"] = None if d is None else 0.0 - d
        notes["tpr_drop_at_1e-2"] = "FPR 1e-2 unsupported: fewer than 100 impostor pairs"
        values["auroc_drop"] = 0.0 - rec["auroc_delta"]
    else:
        values["tpr_drop_at_1e-2"] = values["auroc_drop"] = None
        notes["tpr_drop_at_1e-2"] = notes["auroc_drop"] = "images are not labelled"
    out = []
    for check, limit in tol.items():
        v, op = values.get(check), CHECKS[check]
        if v is None:
            out.append({"check": check, "value": None, "op": op, "limit": limit,
                        "passed": None, "note": notes.get(check, "no value")})  # fmt: skip
            continue
        eps = 1e-12  # TPR/AUROC differences are ratios of counts: absorb float rounding
        ok = v >= limit - eps if op == ">=" else v <= limit + eps
        out.append({"check": check, "value": float(v), "op": op, "limit": limit,
                    "passed": bool(ok)})  # fmt: skip
    return out
