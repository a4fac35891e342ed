# Two set-up commands for a new machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# Installed before the project so that the `train` extra never pulls a CUDA build of torch.
TORCH ?= torch==2.13.0
EXTRAS ?= cpu,train,test,eval,ray
BIN := $(VENV)/bin
# `--provider openvino` needs onnxruntime-openvino, which replaces onnxruntime: its own environment.
OV_VENV ?= .venv-openvino
OV_BIN := $(OV_VENV)/bin
STAMP := $(VENV)/.installed-$(shell printf '%s' '$(TORCH) $(EXTRAS)' | cksum | cut -d' ' -f1)

.PHONY: demo test test-openvino lint venv clean browser mutants

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/deepsmote demo --out demo-output --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .

# Headless Chromium for the report's browser test (Debian package `chromium`); where it cannot be
# installed (not root, no apt) the test skips and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; } || \
		echo "chromium not installed: tests/test_runtime_report.py's browser check will skip"

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The mutation check (scripts/mutants.py, scripts/mutants.toml): each mutant applied to a copy of the
# tree must fail its tests; a table, and a non-zero exit on any survivor. Not part of `make test`.
mutants: $(STAMP)
	$(BIN)/python scripts/mutants.py

# The OpenVINO provider's tests (Ray's too), in an environment with onnxruntime-openvino in place of
# onnxruntime (no torch: they use the committed golden bundle).
OV_EXTRAS ?= openvino,test,ray
OV_STAMP := $(OV_VENV)/.installed-$(shell printf '%s' '$(OV_EXTRAS)' | cksum | cut -d' ' -f1)

$(OV_STAMP): pyproject.toml
	test -x $(OV_BIN)/python || $(PYTHON) -m venv $(OV_VENV)
	$(OV_BIN)/python -m pip install -q --upgrade pip
	$(OV_BIN)/python -m pip install -q -e '.[$(OV_EXTRAS)]'
	rm -f $(OV_VENV)/.installed*
	touch $@

test-openvino: $(OV_STAMP)
	$(OV_BIN)/python -m pytest -q -p no:cacheprovider tests/test_runtime_openvino.py

clean:
	rm -rf $(VENV) $(OV_VENV) build dist *.egg-info demo-output
