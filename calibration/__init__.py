"""docedge.calibration: INT8 and threshold calibration, synthetic data, QA parity."""
