"""Parity reports people can read: JSON, a Markdown summary table, and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np

from .parity import ParityResult


def write_report(result: ParityResult, out_dir: Union[str, Path]) -> Dict[str, str]:
    """Write ``parity.json``, ``parity.md``, ``roc.png``, ``scores.png``, ``cosine.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "parity.json", "markdown": out / "parity.md"}
    files["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    files["markdown"].write_text(markdown(result), encoding="utf-8")
    files.update(plots(result, out))
    return {k: str(v) for k, v in files.items()}


def markdown(r: ParityResult) -> str:
    lines = [f"# Parity report: {r.bundle}", "",
             f"Reference: {r.reference}. Images: {r.images} "
             f"({'labelled' if r.labelled else 'unlabelled'}). "
             f"Result: **{'PASS' if r.passed else 'FAIL'}**", "",
             "| artifact | cos min | cos p1 | cos mean | max abs diff | top-1 NN agree | "
             "decision agree | TPR@1e-2 (delta) | AUROC | checks |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for a in r.artifacts:
        e = a["embedding"]
        tpr = a.get("tpr_at_fpr", {}).get("0.01")
        d = a.get("tpr_delta", {}).get("0.01")
        tpr_s = f"{tpr:.3f} ({d:+.3f})" if tpr is not None and d is not None else "-"
        auroc = f"{a['auroc']:.4f}" if "auroc" in a else "-"
        failed = [c["check"] for c in a["checks"] if not c["passed"]]
        status = "pass" if not failed else "FAIL: " + ", ".join(failed)
        lines.append(f"| {a['name']} | {e['cos_min']:.6f} | {e['cos_p1']:.6f} | "
                     f"{e['cos_mean']:.6f} | {e['max_abs_diff']:.2e} | "
                     f"{a['neighbour_agreement']:.3f} | {a['decision_agreement']:.3f} | {tpr_s} | "
                     f"{auroc} | {status} |")  # fmt: skip
    if r.reference_metrics.get("tpr_at_fpr"):
        rm = r.reference_metrics
        lines += ["", f"Reference: TPR@1e-2 {rm['tpr_at_fpr'].get('0.01')}, "
                  f"AUROC {rm['auroc']:.4f}, threshold {rm['threshold']:.3f}."]  # fmt: skip
    for s in r.skipped:
        lines.append(f"\nSkipped {s['name']}: {s['reason']}")
    if r.failures:
        lines += ["", "## Failing checks", ""] + [f"- {f}" for f in r.failures]
    return "\n".join(lines) + "\n"


def plots(r: ParityResult, out: Path) -> Dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: Dict[str, Path] = {}
    arts: Dict[str, Any] = r.raw.get("artifacts", {})
    if r.labelled and r.raw.get("reference_scores") is not None:
        from sklearn.metrics import roc_curve

        fig, ax = plt.subplots(figsize=(6, 4.5))
        series: List[Any] = [("reference", r.raw["reference_scores"])]
        series += [(n, v["scores"]) for n, v in arts.items() if v.get("scores") is not None]
        for name, (gen, imp) in series:
            y = np.r_[np.ones(len(gen)), np.zeros(len(imp))]
            fpr, tpr, _ = roc_curve(y, np.r_[gen, imp])
            ax.plot(np.maximum(fpr, 1e-6), tpr, label=name, lw=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC per artifact")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        files["roc"] = out / "roc.png"
        fig.tight_layout()
        fig.savefig(files["roc"], dpi=110)
        plt.close(fig)

        n = len(series)
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
        for ax, (name, (gen, imp)) in zip(axes[0], series):
            bins = np.linspace(0, 1, 81)
            ax.hist(imp, bins=bins, alpha=0.6, density=True, label="impostor")
            ax.hist(gen, bins=bins, alpha=0.6, density=True, label="genuine")
            ax.set_title(name, fontsize=8)
            ax.set_xlabel("score (cos+1)/2")
        axes[0][0].legend(fontsize=7)
        files["scores"] = out / "scores.png"
        fig.tight_layout()
        fig.savefig(files["scores"], dpi=110)
        plt.close(fig)

    if arts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, v in arts.items():
            cos = np.clip(v["cosine"], -1, 1)
            ax.hist(1 - cos, bins=list(np.logspace(-9, 0, 60)), alpha=0.5, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("1 - cosine to reference (per image)")
        ax.set_ylabel("images")
        ax.set_title("Embedding agreement with the reference")
        ax.legend(fontsize=7)
        files["cosine"] = out / "cosine.png"
        fig.tight_layout()
        fig.savefig(files["cosine"], dpi=110)
        plt.close(fig)
    return files
