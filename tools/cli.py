"""The ``docedge`` command line: a thin layer over the library APIs.

Each module in :mod:`docedge.tools.commands` that defines ``register(subparsers)`` adds one
subcommand (or group). Handlers return the process exit code. Human output by default;
``--json`` prints one JSON object for machines. Heavy libraries are imported inside handlers
so that ``docedge --help`` and device-side commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import List, Optional

from docedge.runtime import __version__
from docedge.runtime.errors import DocedgeError

from . import commands

logger = logging.getLogger("docedge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docedge",
        description="Export, calibrate, verify and run DocClassifier's zero-shot document "
        "classifier on edge devices.",
    )
    parser.add_argument("--version", action="version", version=f"docedge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(sub)
    return parser


#: Which extra brings a missing module (``pip install 'docedge[EXTRA]'``).
EXTRA_FOR_MODULE = {
    "torch": "export", "torchvision": "export", "timm": "export", "onnxsim": "export",
    "onnxconverter_common": "export", "safetensors": "export", "onnx": "export",
    "sklearn": "calibration", "matplotlib": "calibration", "onnxruntime": "onnxruntime",
    "tqdm": "export", "polygraphy": "dev", "ray": "serve", "tritonclient": "triton",
    "openvino": "openvino", "nncf": "openvino-export", "coremltools": "coreml", "ai_edge_litert": "litert",
    "litert_torch": "litert", "ncnn": "ncnn", "pnnx": "ncnn",
}


def missing_extra_message(e: ModuleNotFoundError) -> str:
    """``torch is not installed: pip install 'docedge[export]'`` for a missing optional module."""
    top = (e.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None:
        return f"{e} (an optional dependency is missing)"
    return (f"this command needs {top}, which is not installed: pip install 'docedge[{extra}]' "
            "(the device runtime alone is `docedge[onnxruntime]`)")


def _utf8_safe_streams() -> None:
    """File names that are not valid UTF-8 are printed escaped, never a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - detached or closed streams
                pass


def _fail(args: argparse.Namespace, kind: str, message: str, code: int) -> int:
    if getattr(args, "json", False):
        import json

        print(json.dumps({"ok": False, "error": kind, "message": message}))
    else:
        print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; exit codes: 0 pass, 1 a real shortfall (a failed check), 2 a usage,
    input or environment error (bad option, unreadable file, missing extra, full disk)."""
    _utf8_safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except DocedgeError as e:
        return _fail(args, type(e).__name__, str(e), 2)
    except ModuleNotFoundError as e:
        return _fail(args, "MissingExtra", missing_extra_message(e), 2)
    except BrokenPipeError:  # `docedge gallery list | head`: the reader left; not an error
        try:
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except OSError as e:  # a full disk, a read-only folder, a permission problem
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return _fail(args, type(e).__name__, f"{where}{e.strerror or e}", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
