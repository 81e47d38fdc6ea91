"""QA example: calibrate thresholds per precision, then run a parity check with reports.

    python samples/qa_parity.py BUNDLE_DIR [WORK_DIR]

Two labelled synthetic sets of document types the demo model never saw (type ids < 1000):
one calibrates the thresholds, the other checks parity. Exits 0 when every artifact passes
its checks, 1 otherwise (like `docedge parity`). The same from the shell:

    docedge calibrate thresholds BUNDLE --images WORK/calibration --replace
    docedge parity BUNDLE --images WORK/evaluation --report WORK/report
"""

import sys
from pathlib import Path

from docedge.calibration.golden import write_golden_for_bundle
from docedge.calibration.parity import load_tolerances, run_parity
from docedge.calibration.reports import write_report
from docedge.calibration.thresholds import calibrate_thresholds, describe_table
from docedge.runtime.bundle import load_bundle
from docedge.synth.dataset import write_documents

bundle = Path(sys.argv[1])
work = Path(sys.argv[2] if len(sys.argv) > 2 else "qa_out")
calibration, evaluation = work / "calibration", work / "evaluation"
write_documents(calibration, types=30, per_type=4, first_type_id=600, capture_strength=0.7)
write_documents(evaluation, types=20, per_type=4, first_type_id=700, capture_strength=0.7)

# Per precision, into the manifest; replace=True: this QA run's tables supersede the model card's
# (the old tables' provenance stays in each new table's source.replaces).
for table in calibrate_thresholds(bundle, calibration, replace=True).values():
    print(describe_table(table), end="\n\n")

# One more check for int8 (neighbour agreement), and the worst-image cosine relaxed from the
# export gate's 0.97 to 0.9 for these harder captures: the report lists that relaxation.
tolerances = load_tolerances(overrides={"int8": {"neighbour_agreement": 0.95, "cos_min": 0.9}})
result = run_parity(bundle, evaluation, tolerances=tolerances, tensorrt=False)
golden = write_golden_for_bundle(work / "report" / "golden", load_bundle(bundle), result)
files = write_report(result, work / "report", polygraphy=golden["commands"])
print("PASS" if result.passed else "FAIL", *result.failures, sep="\n")
print("report:", files["markdown"])
sys.exit(0 if result.passed else 1)
