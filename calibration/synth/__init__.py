"""Synthetic documents and capture conditions (seeded, no downloads).

- :mod:`.documents`: document types (layouts) and instances;
- :mod:`.captures`: the capture simulator (light, shadow, blur, glare, crop errors, JPEG, ...);
- :mod:`.dataset`: labelled folders on disk, always marked synthetic.
"""
