# One-command entry points. Both create .venv/ and install what they need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.docedge-installed

.PHONY: setup demo test test-fast lint typecheck pytest clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# ncnn and Core ML converters are small and install cleanly beside [dev]; LiteRT ([litert],
	# about 1 GB with jax and transformers) is left out: its tests skip naming the extra.
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,ncnn,coreml]'
	# Stubs only (type checking of the TensorRT code); --no-deps: the real TensorRT libraries
	# are not pip-installable everywhere and are never needed for the checks.
	$(BIN)/python -m pip install --quiet --no-deps tensorrt-stubs
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/docedge demo

lint: $(STAMP)
	$(BIN)/ruff check runtime synth export calibration tools tests samples
	$(BIN)/vermin --no-tips --violations -t=3.8- runtime

# tensorrt-stubs ships .pyi files without py.typed, and some generated signatures use the
# keyword `in` as a parameter name; a sanitized copy is exposed to mypy through mypy_path.
typecheck: $(STAMP)
	rm -rf .typecheck/stubs && mkdir -p .typecheck/stubs
	SP=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  cp -r $$SP/tensorrt $$SP/tensorrt_bindings .typecheck/stubs/
	sed -i -E 's/([(,] *)in: /\1in_: /g' .typecheck/stubs/tensorrt_bindings/*.pyi .typecheck/stubs/tensorrt/*.pyi
	sed -i -E 's/, channel_axis: int\) -> IScaleLayer/, channel_axis: int = ...) -> IScaleLayer/' .typecheck/stubs/tensorrt_bindings/tensorrt.pyi
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

# Everything (what CI runs). `make test-fast` skips the tests marked slow (kills, full exports,
# the demo, Ray): a few minutes on 2 cores for the edit-test loop.
test: lint typecheck pytest

test-fast: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
