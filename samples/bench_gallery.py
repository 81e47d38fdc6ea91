"""Gallery search and open times beside the memory-bandwidth floor.

    python samples/bench_gallery.py                       # 10k, 100k, 1M entries; fp16 and fp32
    python samples/bench_gallery.py --sizes 10000,100000 --queries 1,32 --json

For each size and dtype: a top-5 search of ``--queries`` query vectors over a random unit-vector
gallery, and the time to read the same embedding bytes once (the floor). Then the time to open
a gallery file of that size (lazy: header + memory map; default: + label sections; with
labels: + per-row label ids, what a Classifier needs; verified: + every checksum). Medians
(and minima, the better estimate on a busy machine) in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from docedge.runtime.gallery import benchmark_open
from docedge.runtime.search import benchmark_search, search_threads


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--queries", default="1", help="query batch sizes (comma-separated)")
    p.add_argument("--dtypes", default="float16,float32")
    p.add_argument("--threads", type=int, help="search threads (default: automatic)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--open-max", type=int, default=100_000, help="largest size for open times")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    queries = [int(q) for q in args.queries.split(",") if q]
    dtypes = [d for d in args.dtypes.split(",") if d]

    search = []
    for n in sizes:
        for dtype in dtypes:
            for q in queries:
                search.append(benchmark_search(n, dtype, queries=q, repeats=args.repeats,
                                               threads=args.threads))  # fmt: skip
                if not args.json:
                    _print_search(search[-1], first=len(search) == 1)
    opens = []
    for n in sizes:
        if n <= args.open_max:
            opens.append(benchmark_open(n, "float16", repeats=args.repeats))
            if not args.json:
                _print_open(opens[-1], first=len(opens) == 1)
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "search": search, "open": opens}, indent=2))
    return 0


def _print_search(r: dict, first: bool) -> None:
    if first:
        print(f"search (top-5), {os.cpu_count()} CPUs; default threads for 1M float16: "
              f"{search_threads(1_000_000, 256, 'float16')}")  # fmt: skip
        print(f"{'entries':>9} {'dtype':>8} {'Q':>3} {'thr':>3} {'MB':>7} {'search ms':>10} "
              f"{'floor ms':>9} {'ratio':>6} {'(min':>6} {'min)':>6}")  # fmt: skip
    print(f"{r['entries']:>9} {r['dtype']:>8} {r['queries']:>3} {r['threads']:>3} "
          f"{r['gallery_mb']:>7.1f} {r['search_ms']:>10.2f} {r['read_floor_ms']:>9.2f} "
          f"{r['ratio_to_floor']:>6.2f} {r['search_min_ms']:>6.1f} {r['read_floor_min_ms']:>6.1f}",
          flush=True)  # fmt: skip


def _print_open(r: dict, first: bool) -> None:
    if first:
        print(f"\nopen ({r['dtype']} file) {'MB':>6} {'lazy ms':>8} {'default':>8} "
              f"{'+labels':>8} {'verified':>9}")  # fmt: skip
    print(f"{r['entries']:>18} {r['file_mb']:>6.1f} {r['open_lazy_ms']:>8.2f} "
          f"{r['open_ms']:>8.1f} {r['open_with_labels_ms']:>8.1f} {r['open_verified_ms']:>9.1f}",
          flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
