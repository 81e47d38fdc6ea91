"""Register one image per document type, then classify new captures (about 20 lines).

    python samples/quickstart.py [WORK_DIR]
"""

import sys
from pathlib import Path

from docedge.export.bundle_writer import export_bundle
from docedge.runtime import Classifier
from docedge.runtime.embedder import Embedder
from docedge.runtime.gallery_sync import sync_register
from docedge.synth.dataset import write_captures, write_documents

work = Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart_out")
bundle = export_bundle(work / "bundle", overwrite=True)              # the embedded demo model
write_documents(work / "register", types=5, per_type=1)             # one image per document type
write_captures(work / "register", work / "captures", per_image=2)  # phone-like captures of them
sync_register(work / "gallery.gal", Embedder(bundle), work / "register")
clf = Classifier(bundle, work / "gallery.gal", fpr=1e-2)           # threshold from the bundle's table
images = sorted((work / "captures").rglob("*.jpg"))
for path, d in zip(images, clf.classify([str(p) for p in images])):
    print(f"{path.parent.name:<45} -> {d.label or 'unknown'} (score {d.score:.3f})")
