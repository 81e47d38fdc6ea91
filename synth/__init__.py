"""docedge.synth: seeded synthetic documents and captures (numpy + OpenCV, no downloads).

A stage of its own, below export and calibration and above runtime only:

- :mod:`.documents`: document types (layouts) and instances;
- :mod:`.captures`: the capture simulator (light, shadow, blur, glare, crop errors, JPEG, ...);
- :mod:`.dataset`: labelled folders on disk, always marked synthetic.
"""
