"""``docedge calibrate int8|thresholds``: the command group.

Each subcommand lives in its own module: ``calibrate_int8.register_int8`` (INT8 calibration)
and ``calibrate_thresholds.register_thresholds`` (TPR@FPR tables; registered when that module
is present). Each sets ``func=run``.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="INT8 calibration or threshold tables for a bundle")
    g = p.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)
    from .calibrate_int8 import register_int8

    register_int8(g)
    try:
        from .calibrate_thresholds import register_thresholds
    except ImportError:
        logger.debug("calibrate thresholds: module not present")
    else:
        register_thresholds(g)
