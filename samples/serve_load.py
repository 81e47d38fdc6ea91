"""Load and fault figures for ``docedge serve`` on loopback only (bounded in count and time).

    python samples/serve_load.py BUNDLE GALLERY [--requests 200] [--json out.json]

Starts a local Ray, deploys docedge with 1 and then 2 replicas on 127.0.0.1, and for 1, 8 and
32 concurrent clients posts JPEG captures to /classify: throughput, p50/p99 latency, and every
answer checked against a direct Classifier call (none may differ). Then, with 2 replicas under
load, kills one replica's actor: requests must either succeed with the right answer or fail
with an HTTP error, never answer wrongly. Every loop is bounded by --requests and a deadline.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes) -> Tuple[int, Optional[Dict[str, Any]], float]:
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"),
                                    timeout=60) as r:  # fmt: skip
            return r.status, json.loads(r.read()), time.perf_counter() - t
    except urllib.error.HTTPError as e:
        return e.code, None, time.perf_counter() - t
    except OSError:
        return 0, None, time.perf_counter() - t


def _captures(n: int) -> List[bytes]:
    from docedge.synth.captures import capture
    from docedge.synth.documents import DocumentType, render

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = capture(render(DocumentType.from_id(i % 8), 50 + i), rng, 0.5)
        out.append(cv2.imencode(".jpg", img)[1].tobytes())
    return out


def _load(url: str, bodies: List[bytes], expected: List[Optional[str]], clients: int,
          requests: int, deadline_s: float) -> Dict[str, Any]:  # fmt: skip
    lat: List[float] = []
    wrong = failed = 0
    lock = threading.Lock()
    end = time.monotonic() + deadline_s

    def one(i: int) -> None:
        nonlocal wrong, failed
        if time.monotonic() > end:
            return
        status, res, dt = _post(url, bodies[i % len(bodies)])
        with lock:
            if status == 200 and res is not None:
                lat.append(dt)
                if res.get("label") != expected[i % len(bodies)]:
                    wrong += 1
            else:
                failed += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    lat.sort()
    return {"clients": clients, "ok": len(lat), "failed": failed, "wrong": wrong,
            "requests_per_s": len(lat) / wall if wall else 0.0,
            "p50_ms": 1000 * statistics.median(lat) if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle")
    p.add_argument("gallery")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--deadline", type=float, default=60.0, help="seconds per load run")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    import ray
    from ray import serve

    from docedge.runtime.classifier import Classifier
    from docedge.runtime.serve import build_app

    bodies = _captures(32)
    direct = Classifier(args.bundle, args.gallery, threshold=0.5)
    expected = [d.label for d in direct.classify(bodies)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/classify"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    figures: Dict[str, Any] = {"load": [], "kill": None}
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for replicas in (1, 2):
            serve.run(build_app(args.bundle, args.gallery, threshold=0.5, num_replicas=replicas,
                                num_cpus=0.5), route_prefix="/", name="docedge")  # fmt: skip
            for clients in (1, 8, 32):
                row = _load(url, bodies, expected, clients, args.requests, args.deadline)
                row["replicas"] = replicas
                figures["load"].append(row)
                print(json.dumps(row), flush=True)
        # a replica killed mid-load (2 replicas deployed)
        actors = [a for a in ray.util.list_named_actors(all_namespaces=True)
                  if "SERVE_REPLICA" in str(a.get("name", "")).upper()]  # fmt: skip
        killer = None
        if actors:
            victim = ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"])
            killer = threading.Timer(1.0, lambda: ray.kill(victim, no_restart=False))
            killer.start()
        row = _load(url, bodies, expected, 8, args.requests, args.deadline)
        row["replicas"], row["killed_replica"] = 2, bool(actors)
        figures["kill"] = row
        print(json.dumps(row), flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    bad = sum(r["wrong"] for r in figures["load"]) + (figures["kill"] or {}).get("wrong", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
