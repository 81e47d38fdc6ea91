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


def main(argv: Optional[List[str]] = None) -> int:
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
        if getattr(args, "json", False):
            import json

            print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e)}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
