"""Parity reports people can read: ``parity.json``, a Markdown summary and PNG plots.

Plots (matplotlib, Agg backend, no display needed):

- ``roc.png``: ROC curves of the reference and every artifact on one log-FPR chart
  (labelled images only);
- ``scores.png``: genuine vs impostor score histograms, one panel per artifact, with the
  artifact's decision threshold (labelled images only);
- ``cosine.png``: per-image ``1 - cosine`` to the reference, one histogram per artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .parity import ParityResult
from .thresholds import fpr_key


def write_report(result: ParityResult, out_dir: Union[str, Path],
                 polygraphy: Optional[Dict[str, str]] = None) -> Dict[str, str]:  # fmt: skip
    """Write ``parity.json``, ``parity.md`` and the PNG plots; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "parity.json", "markdown": out / "parity.md"}
    doc = result.to_json()
    if polygraphy:
        doc["polygraphy"] = polygraphy
    files["json"].write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    files["markdown"].write_text(markdown(result, polygraphy), encoding="utf-8")
    files.update(plots(result, out))
    return {k: str(v) for k, v in files.items()}


def _f(v: Optional[float], fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def markdown(r: ParityResult, polygraphy: Optional[Dict[str, str]] = None) -> str:
    """The Markdown summary: verdict, one row per artifact, failing checks, TPR tables."""
    op = r.operating_point
    at = f"threshold {op['threshold']:g} (explicit)" if op.get("threshold") is not None \
        else f"FPR {fpr_key(op['fpr'])} row of each precision's table"
    lines = [
        f"# Parity report: {r.bundle}", "",
        f"**Result: {'PASS' if r.passed else 'FAIL'}**", "",
        f"- Reference: {r.reference}",
        f"- Images: {r.images} ({f'labelled, {r.classes} classes' if r.labelled else 'unlabelled'})"
        f" from `{r.images_dir}` (sha256 {r.images_sha256[:12]}...)",
        f"- Gallery: {r.gallery.get('mode')} ({r.gallery.get('entries')} entries, "
        f"{r.gallery.get('labels')} labels); operating point: {at}",
        "",
        "| artifact | cos min | cos p1 | cos mean | max abs diff | top-1 NN agree | "
        "decision agree | TPR@1e-2 (delta) | AUROC (delta) | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for a in r.artifacts:
        if a.get("error"):
            lines.append(f"| {a['name']} | - | - | - | - | - | - | - | - | "
                         f"FAIL: unavailable ({a['error']}) |")  # fmt: skip
            continue
        e = a["embedding"]
        tpr = a.get("tpr_at_fpr", {}).get("1e-2")
        d = a.get("tpr_delta", {}).get("1e-2")
        tpr_s = f"{tpr:.3f} ({d:+.3f})" if tpr is not None and d is not None else "n/a"
        auroc = f"{a['auroc']:.4f} ({a['auroc_delta']:+.4f})" if "auroc" in a else "n/a"
        failed = [c["check"] for c in a["checks"] if c["passed"] is False]
        status = "pass" if not failed else "FAIL: " + ", ".join(failed)
        lines.append(
            f"| {a['name']} | {e['cos_min']:.6f} | {e['cos_p1']:.6f} | {e['cos_mean']:.6f} | "
            f"{e['max_abs_diff']:.2e} | {a['neighbour_agreement']:.4f} | "
            f"{a['decision_agreement']:.4f} | {tpr_s} | {auroc} | {status} |"
        )
    rm = r.reference_metrics
    ref_line = f"Reference threshold {rm['threshold']:.4f} ({rm['threshold_source']})"
    if "auroc" in rm:
        ref_line += (f"; TPR@1e-2 {_f(rm['tpr_at_fpr'].get('1e-2'))}, AUROC {rm['auroc']:.4f}, "
                     f"{rm['pairs']['genuine_pairs']:,} genuine / "
                     f"{rm['pairs']['impostor_pairs']:,} impostor pairs")  # fmt: skip
    if "top1_accuracy" in rm:
        ref_line += f"; top-1 accuracy {rm['top1_accuracy']:.4f}"
    lines += ["", ref_line + "."]
    if r.failures:
        lines += ["", "## Failing checks", ""] + [f"- {f}" for f in r.failures]
    lines += ["", "## Checks", "", "| artifact | check | value | limit | result |",
              "|---|---|---|---|---|"]  # fmt: skip
    for a in r.artifacts:
        for c in a["checks"]:
            res = {True: "pass", False: "**FAIL**", None: f"not evaluated ({c.get('note')})"}
            lines.append(f"| {a['name']} | {c['check']} | {_f(c['value'], '.6g')} | "
                         f"{c['op']} {c['limit']:g} | {res[c['passed']]} |")  # fmt: skip
    if r.labelled and "table" in rm:
        keys = [fpr_key(row["fpr"]) for row in rm["table"]]
        lines += ["", "## TPR at FPR", "", "| | " + " | ".join(keys) + " | AUROC |",
                  "|---" * (len(keys) + 2) + "|"]  # fmt: skip
        rows: List[Tuple[str, Dict[str, Any]]] = [("reference", rm)]
        rows += [(a["name"], a) for a in r.artifacts if "tpr_at_fpr" in a]
        for name, m in rows:
            cells = [_f(m["tpr_at_fpr"].get(k)) for k in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['auroc']:.4f} |")
        lines.append("")
        lines.append("n/a: floor(FPR x impostor pairs) = 0, the data cannot support that FPR.")
    if "ranking" in rm:
        lines += ["", "## Ranking quality", "",
                  "| | NDCG | mAP@R | recall@1 | recall@5 | queries |", "|---|---|---|---|---|---|"]
        rrows: List[Tuple[str, Dict[str, Any], Dict[str, Any]]] = [("reference", rm["ranking"], {})]
        rrows += [(a["name"], a["ranking"], a.get("ranking_delta", {})) for a in r.artifacts
                  if "ranking" in a]  # fmt: skip

        def cell(m: Dict[str, Any], d: Dict[str, Any], k: str) -> str:
            v = m.get(k)
            if v is None:
                return "n/a"
            return f"{v:.4f}" + (f" ({d[k]:+.4f})" if k in d else "")

        for name, m, d in rrows:
            lines.append(f"| {name} | {cell(m, d, 'ndcg')} | {cell(m, d, 'map_at_r')} | "
                         f"{cell(m, d, 'recall_at_1')} | {cell(m, d, 'recall_at_5')} | "
                         f"{m['queries']} |")  # fmt: skip
    worst = [(a["name"], w) for a in r.artifacts for w in a.get("worst_images", [])]
    if worst:
        lines += ["", "## Worst images (lowest cosine to the reference)", "",
                  "| artifact | image | cosine |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {name} | {w['image']} | {w['cosine']:.6f} |" for name, w in worst]
    disagree = [(a["name"], x) for a in r.artifacts
                for x in a.get("disagreements", {}).get("examples", [])]  # fmt: skip
    if disagree:
        lines += ["", "## Decision disagreements (first few)", "",
                  "| artifact | image | reference (score) | artifact (score) |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, x in disagree:
            lines.append(f"| {name} | {x['image']} | {x['reference'] or 'unknown'} "
                         f"({x['reference_score']:.4f}) | {x['artifact'] or 'unknown'} "
                         f"({x['artifact_score']:.4f}) |")  # fmt: skip
    if r.skipped:
        lines += ["", "## Skipped", ""] + [f"- {s['name']}: {s['reason']}" for s in r.skipped]
    if r.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    if polygraphy:
        lines += ["", "## Check with NVIDIA Polygraphy", "", "```sh"]
        lines += [*polygraphy.values(), "```"]
    return "\n".join(lines) + "\n"


def plots(r: ParityResult, out: Path) -> Dict[str, Path]:
    """Write the PNG plots that apply to ``r``; returns ``{kind: path}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: Dict[str, Path] = {}
    arts: Dict[str, Any] = r.raw.get("artifacts", {})
    thresholds = {a["name"]: a["threshold"] for a in r.artifacts if "threshold" in a}
    thresholds["reference"] = r.reference_metrics.get("threshold")
    if r.labelled and r.raw.get("reference_scores") is not None:
        series: List[Any] = [("reference", r.raw["reference_scores"])]
        series += [(name, v["scores"]) for name, v in arts.items() if v.get("scores") is not None]

        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        styles = ["--", ":", "-.", (0, (5, 1, 1, 1))]
        for i, (name, (gen, imp)) in enumerate(series):
            fpr, tpr = _roc(gen, imp)
            # overlapping curves stay distinguishable: own colour, dash pattern and width
            ax.step(np.maximum(fpr, 1e-7), tpr, where="post", label=name, color=f"C{i % 10}",
                    lw=2.6 if i == 0 else 1.4, ls="-" if i == 0 else styles[(i - 1) % len(styles)],
                    alpha=0.9)  # fmt: skip
        ax.set_xscale("log")
        n_imp = max(len(series[0][1][1]), 1)
        left = max(1e-6, 0.5 / n_imp)
        ax.set_xlim(left=left, right=1.0)
        # FPRs below 1/N impostor pairs cannot be measured on this data: shaded, not plotted as if
        ax.axvspan(left, 1.0 / n_imp, color="0.85", zorder=0,
                   label=f"unsupported: FPR < 1/{n_imp:,} impostor pairs")  # fmt: skip
        op_fpr = (r.operating_point or {}).get("fpr")
        if op_fpr:
            ax.axvline(op_fpr, color="k", lw=0.9, ls=":", label=f"operating FPR {op_fpr:g}")
        ax.set_xlabel("false positive rate (impostor pairs)")
        ax.set_ylabel("true positive rate (genuine pairs)")
        ax.set_title("ROC: reference and every artifact")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3, which="both")
        files["roc"] = out / "roc.png"
        fig.tight_layout()
        fig.savefig(files["roc"], dpi=110)
        plt.close(fig)

        cols = min(3, len(series))
        nrows = (len(series) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False)
        bins = np.linspace(0, 1, 101)
        for ax, (name, (gen, imp)) in zip(axes.ravel(), series):
            ax.hist(imp, bins=bins, alpha=0.6, density=True, label="impostor")
            ax.hist(gen, bins=bins, alpha=0.6, density=True, label="genuine")
            t = thresholds.get(name)
            if t is not None:
                ax.axvline(t, color="k", lw=0.8, ls=":", label=f"threshold {t:.3f}")
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("score (cos+1)/2", fontsize=8)
            ax.legend(fontsize=6)
        for ax in axes.ravel()[len(series):]:
            ax.set_visible(False)
        files["scores"] = out / "scores.png"
        fig.tight_layout()
        fig.savefig(files["scores"], dpi=110)
        plt.close(fig)

    if arts:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        floor = 1e-9
        edges = np.logspace(np.log10(floor), 0, 73)
        precision = {a["name"]: a["precision"] for a in r.artifacts}
        for i, (name, v) in enumerate(arts.items()):
            gap = np.clip(1.0 - np.asarray(v["cosine"], np.float64), floor, 1.0)
            color = f"C{i % 10}"
            ax.hist(gap, bins=list(edges), histtype="step", lw=1.4, label=name, color=color)
            limit = r.tolerances.get(precision.get(name, ""), {}).get("cos_min")
            if limit is not None and limit < 1.0:  # the tolerance: every image left of it
                ax.axvline(max(1.0 - limit, floor), color=color, lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel(f"1 - cosine to the reference, per image (values below {floor:g} "
                      "shown at it)")  # fmt: skip
        ax.set_ylabel("images")
        ax.set_title("Embedding agreement with the reference (dotted: cos_min tolerance)")
        ax.legend(fontsize=7)
        files["cosine"] = out / "cosine.png"
        fig.tight_layout()
        fig.savefig(files["cosine"], dpi=110)
        plt.close(fig)
    return files


def _roc(genuine: np.ndarray, impostor: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr)`` for plotting (scikit-learn's ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = roc_curve(y, np.r_[genuine, impostor])
    return fpr, tpr
