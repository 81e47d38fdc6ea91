"""Serve a bundle (and a gallery) over HTTP on Ray Serve (``pip install 'docedge[serve]'``).

    docedge serve BUNDLE [GALLERY] --port 8000 --replicas 2

Routes (JSON out; image bytes in as the raw request body):

- ``GET /healthz``: the process is up; ``GET /readyz``: the bundle is verified and loaded (and
  the gallery open), 503 otherwise;
- ``POST /embed``: ``{"embedding": [...256 floats], "dim": 256, "precision"}``;
- ``POST /classify``: the fields of ``docedge classify --json`` for one image: ``label``,
  ``parent``, ``score``, ``threshold``, ``fpr``, ``margin``, ``top_k``;
- a bad image is a 400 with ``{"ok": false, "error": "ImageError", "message": ...}``, a body
  above ``max_request_bytes`` a 413, a classify without a gallery a 409: never a 500 with a
  traceback.

Requests are grouped by Ray Serve's dynamic batching (``@serve.batch``) into batches of up to
the backend's batch size. The bundle is verified when a replica starts; the gallery is opened
read-only and re-opened when another process commits a change (each commit renames a complete
new file into place, so a request sees the old snapshot or the new one, never a mixture).

Python API, to compose into your own Ray Serve application::

    from docedge.runtime.serve import build_app
    app = build_app("bundle/", "g.gal", num_replicas=2)
    serve.run(app, route_prefix="/docedge")

Ray is imported only when an application is built.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the request parameters'
# annotations at definition time, and ``fastapi.Request`` is only imported inside build_app.
import logging
from typing import Any, Dict, List, Optional

from .errors import BackendUnavailableError

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 16 << 20


def _import_ray() -> Any:
    try:
        import fastapi
        from ray import serve
    except ImportError:
        raise BackendUnavailableError("serving needs Ray Serve: pip install 'docedge[serve]'") from None
    return serve, fastapi


class DocedgeService:
    """What one replica does, independent of Ray (tested directly and through HTTP).

    ``embed_batch`` / ``classify_batch`` take lists of encoded images and return one JSON-able
    dict (or a typed error dict) per image."""

    def __init__(self, bundle: str, gallery: Optional[str] = None, precision: str = "fp32",
                 fpr: Optional[float] = 1e-2, threshold: Optional[float] = None, top_k: int = 5,
                 batch_size: int = 32, **backend_options: Any) -> None:  # fmt: skip
        from .bundle import load_bundle
        from .classifier import Classifier
        from .embedder import Embedder

        self.bundle = load_bundle(bundle)  # verified: every checksum and the manifest digest
        self.precision = precision
        self.classifier: Optional[Classifier] = None
        if gallery is not None:
            self.classifier = Classifier(self.bundle, gallery, fpr=fpr, threshold=threshold,
                                         precision=precision, top_k=top_k, batch_size=batch_size,
                                         **backend_options)  # fmt: skip
            self.embedder = self.classifier.embedder
        else:
            self.embedder = Embedder(self.bundle, precision=precision, batch_size=batch_size,
                                     **backend_options)  # fmt: skip

    def ready(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"ok": True, "bundle": str(self.bundle.path),
                                "model": self.bundle.model.get("name"), "precision": self.precision}
        if self.classifier is not None:
            self.classifier.refresh()
            info["gallery"] = {"path": str(self.classifier.gallery.path),
                               "entries": len(self.classifier.gallery)}
        return info

    def embed_batch(self, images: List[bytes]) -> List[Dict[str, Any]]:
        res = self.embedder.embed_many(images)
        out: List[Dict[str, Any]] = []
        for i in range(len(images)):
            if res.ok[i]:
                out.append({"ok": True, "embedding": res.embeddings[i].tolist(),
                            "dim": int(res.embeddings.shape[1]), "precision": self.precision})
            else:
                out.append(_error("ImageError", str(res.errors.get(i, "embedding failed")), 400))
        return out

    def classify_batch(self, images: List[bytes]) -> List[Dict[str, Any]]:
        if self.classifier is None:
            return [_error("NoGallery", "this server has no gallery: start it with "
                           "`docedge serve BUNDLE GALLERY`", 409) for _ in images]  # fmt: skip
        self.classifier.refresh()
        out: List[Dict[str, Any]] = []
        for d in self.classifier.classify(images):
            if d.error:
                out.append(_error("ImageError", d.error, 400))
            else:
                out.append({"ok": True, **d.to_dict()})
        return out


def _error(kind: str, message: str, status: int) -> Dict[str, Any]:
    return {"ok": False, "error": kind, "message": message, "status": status}


def build_app(bundle: str, gallery: Optional[str] = None, precision: str = "fp32",
              fpr: Optional[float] = 1e-2, threshold: Optional[float] = None, top_k: int = 5,
              num_replicas: int = 1, num_cpus: float = 1.0, max_batch_size: Optional[int] = None,
              batch_wait_timeout_s: float = 0.005,
              max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
              **backend_options: Any) -> Any:  # fmt: skip
    """A Ray Serve application (``serve.run(app)``) serving ``bundle`` (and ``gallery``)."""
    serve, fastapi = _import_ray()
    from fastapi.responses import JSONResponse

    Request = fastapi.Request

    batch = max_batch_size or 32
    api = fastapi.FastAPI(title="docedge", description="embed and classify document images")

    async def read_body(request: Any) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            raise _TooLarge(int(declared))
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_request_bytes:
                raise _TooLarge(len(body))
        return body

    def respond(result: Dict[str, Any]) -> Any:
        status = int(result.pop("status", 200)) if not result.get("ok") else 200
        return JSONResponse(result, status_code=status)

    @serve.deployment(num_replicas=num_replicas, ray_actor_options={"num_cpus": num_cpus},
                      max_ongoing_requests=max(2 * batch, 8))  # fmt: skip
    @serve.ingress(api)
    class DocedgeDeployment:
        def __init__(self) -> None:
            self.service = DocedgeService(bundle, gallery, precision, fpr, threshold, top_k,
                                          batch_size=batch, **backend_options)  # fmt: skip

        @serve.batch(max_batch_size=batch, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _embed(self, images: List[bytes]) -> List[Dict[str, Any]]:
            return self.service.embed_batch(images)

        @serve.batch(max_batch_size=batch, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _classify(self, images: List[bytes]) -> List[Dict[str, Any]]:
            return self.service.classify_batch(images)

        @api.get("/healthz")
        async def healthz(self) -> Dict[str, Any]:
            return {"ok": True}

        @api.get("/readyz")
        async def readyz(self) -> Any:
            try:
                return self.service.ready()
            except Exception as e:  # a gallery that became unreadable: not ready, say why
                return JSONResponse(_error(type(e).__name__, str(e), 503), status_code=503)

        @api.post("/embed")
        async def embed(self, request: Request) -> Any:  # type: ignore[valid-type]
            return await self._guarded(request, self._embed)

        @api.post("/classify")
        async def classify(self, request: Request) -> Any:  # type: ignore[valid-type]
            return await self._guarded(request, self._classify)

        async def _guarded(self, request: Any, fn: Any) -> Any:
            try:
                body = await read_body(request)
            except _TooLarge as e:
                return JSONResponse(_error("RequestTooLarge", f"request body of {e.size} bytes is "
                                           f"above the {max_request_bytes} byte limit", 413),
                                    status_code=413)  # fmt: skip
            if not body:
                return JSONResponse(_error("ImageError", "empty request body: send the image "
                                           "bytes", 400), status_code=400)  # fmt: skip
            try:
                return respond(dict(await fn(body)))
            except Exception as e:  # typed JSON for every failure; details in the replica log
                logger.exception("request failed")
                return JSONResponse(_error(type(e).__name__, str(e), 500), status_code=500)

    return DocedgeDeployment.bind()  # type: ignore[attr-defined]


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size
