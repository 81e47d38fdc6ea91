"""Parity over Ray Data shards: the embeddings of an archive by two artifacts (or two bundles),
made on a cluster by :func:`docedge.runtime.bulk.embed_archive`, compared image by image.

    embed_archive("bundle/", archive, "ref_shards/", precision="fp32")
    embed_archive("bundle/", archive, "int8_shards/", precision="int8")
    res = shard_parity("ref_shards/", "int8_shards/", min_cosine=0.97, mean_cosine=0.99)

Images are matched by path; an image present on one side only, or failed on one side only, is
counted and makes the run fail (nothing is compared by accident, nothing dropped silently).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np

from docedge.export.verify import agreement, cosine_rows
from docedge.runtime.bulk import read_shards
from docedge.runtime.errors import DocedgeError


def shard_parity(reference: Union[str, Path], candidate: Union[str, Path], min_cosine: float = 0.97,
                 mean_cosine: float = 0.99, worst: int = 10) -> Dict[str, Any]:  # fmt: skip
    """``{"passed", "compared", "embedding": agreement, "worst", "only_reference",
    "only_candidate", "failed_reference", "failed_candidate", "failures"}``."""
    rp, re_, rerr = read_shards(reference)
    cp, ce, cerr = read_shards(candidate)
    r_index = {p: i for i, p in enumerate(rp)}
    c_index = {p: i for i, p in enumerate(cp)}
    common = sorted(set(r_index) & set(c_index))
    if not common:
        raise DocedgeError(f"{reference} and {candidate}: no image embedded on both sides")
    a = re_[[r_index[p] for p in common]]
    b = ce[[c_index[p] for p in common]]
    ag = agreement(a, b)
    cos = cosine_rows(a, b)
    order = np.argsort(cos, kind="stable")[:worst]
    res: Dict[str, Any] = {
        "compared": len(common), "embedding": ag.to_dict(),
        "worst": [{"image": common[i], "cosine": float(cos[i])} for i in order],
        "only_reference": sorted(set(r_index) - set(c_index) - set(cerr)),
        "only_candidate": sorted(set(c_index) - set(r_index) - set(rerr)),
        "failed_reference": sorted(set(rerr) - set(cerr)),
        "failed_candidate": sorted(set(cerr) - set(rerr)),
        "gate": {"cos_min": min_cosine, "cos_mean": mean_cosine},
    }
    failures = []
    if ag.cos_min < min_cosine:
        failures.append(f"cos_min {ag.cos_min:.6f} < {min_cosine}")
    if ag.cos_mean < mean_cosine:
        failures.append(f"cos_mean {ag.cos_mean:.6f} < {mean_cosine}")
    for key in ("only_reference", "only_candidate", "failed_reference", "failed_candidate"):
        if res[key]:
            failures.append(f"{len(res[key])} image(s) {key.replace('_', ' ')}")
    res["failures"], res["passed"] = failures, not failures
    return res
