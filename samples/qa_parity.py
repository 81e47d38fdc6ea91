"""QA example: calibrate thresholds per precision and run a parity check with reports.

    python samples/qa_parity.py BUNDLE_DIR [WORK_DIR]

Exits 0 when every artifact passes its checks, 1 otherwise (like `docedge parity`).
"""

import sys
from pathlib import Path

from docedge.calibration.parity import load_tolerances, run_parity
from docedge.calibration.reports import write_report
from docedge.synth.dataset import write_documents
from docedge.calibration.thresholds import calibrate_thresholds

bundle = Path(sys.argv[1])
work = Path(sys.argv[2] if len(sys.argv) > 2 else "qa_out")
labelled = work / "labelled"
write_documents(labelled, types=20, per_type=4, first_type_id=700, capture_strength=0.7)
tables = calibrate_thresholds(bundle, labelled)                    # per precision, into the manifest
tolerances = load_tolerances(overrides={"int8": {"cos_mean": 0.99}})
result = run_parity(bundle, labelled, tolerances=tolerances, tensorrt=False)
files = write_report(result, work / "report")                      # parity.json/.md + PNG plots
print("PASS" if result.passed else "FAIL", *result.failures, sep="\n")
print("report:", files["markdown"])
sys.exit(0 if result.passed else 1)
