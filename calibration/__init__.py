"""docedge.calibration: INT8 and threshold calibration, QA parity and reports against the reference."""
