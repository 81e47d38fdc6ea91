"""Device example (Jetson / CUDA GPU with TensorRT and pycuda): build an engine for this GPU,
then classify with the TensorRT backend. Not runnable without a GPU.

    python samples/jetson_device.py BUNDLE_DIR GALLERY IMAGE [IMAGE ...]
"""

import sys

from docedge.runtime import Classifier, DocedgeError, load_bundle
from docedge.runtime.backends.tensorrt.builder import Profile, build_engine

if len(sys.argv) < 4:
    sys.exit(__doc__)
try:
    bundle = load_bundle(sys.argv[1])
    engine, built = build_engine(bundle, "fp16", Profile(1, 8, 32))  # cached per GPU/TensorRT
    print(("built " if built else "cached ") + str(engine))
    clf = Classifier(bundle, sys.argv[2], precision="fp16", backend="tensorrt")
except DocedgeError as e:  # no GPU / TensorRT here: say what is missing, no traceback
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
for path, d in zip(sys.argv[3:], clf.classify(sys.argv[3:])):
    print(path, d.label or "unknown", f"{d.score:.3f}")
