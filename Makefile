# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR := .demo
DEMO_RUN := $(DEMO_DIR)/run
DEMO_DATA := $(DEMO_DIR)/synthetic
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: demo test lint bench report clean venv system-deps

venv: $(STAMP)

# torch/torchvision first, pinned to the builds this machine has on disk, so the
# package's range never pulls a multi-GB download. pip byte-compiles what it installs
# on one core; compileall does it on every core afterwards (the venv is built ~30 s
# sooner on two), and pyc files must exist because PYTHONDONTWRITEBYTECODE may be set.
# compileall's status is not checked: like pip, it leaves the odd test file of a
# dependency that does not parse as it is.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q --no-compile -e ".[dev]"
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	touch $(STAMP)

# Debian packages the tests drive (chromium, orthanc + DICOMweb, dicom3tools): installed
# when run as root, named otherwise.
system-deps:
	@bash tools/system-deps.sh

# Two workers, each taking whole files (a file's module fixtures are built once) and one
# torch thread (tests/conftest.py): on two cores 575 s of tests take 463 s, as the
# subprocess-heavy ones (gunicorn, Orthanc, torchrun, Ray, Chromium) wait beside the others.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

$(DEMO_DATA)/labels.csv: | $(STAMP)
	$(BIN)/thyrocam synth $(DEMO_DATA) --cases 400 --seed 0

$(DEMO_RUN)/model.safetensors: $(DEMO_DATA)/labels.csv
	$(BIN)/thyrocam train $(DEMO_DATA) --out $(DEMO_RUN) --preset demo --device cpu

demo: $(STAMP) $(DEMO_RUN)/model.safetensors
	$(BIN)/thyrocam serve --checkpoint $(DEMO_RUN) --host $(HOST) --port $(PORT) --examples $(DEMO_DATA)

# The evaluation report on the demo set, with the modality ablation (same data,
# seed and split; the clinical-only model skips the CNN and trains in seconds).
$(DEMO_DIR)/run_image/model.safetensors: $(DEMO_DATA)/labels.csv
	$(BIN)/thyrocam train $(DEMO_DATA) --out $(DEMO_DIR)/run_image --preset demo --modalities image --device cpu --no-progress

$(DEMO_DIR)/run_clinical/model.safetensors: $(DEMO_DATA)/labels.csv
	$(BIN)/thyrocam train $(DEMO_DATA) --out $(DEMO_DIR)/run_clinical --preset demo --modalities clinical --device cpu --no-progress

report: $(DEMO_RUN)/model.safetensors $(DEMO_DIR)/run_image/model.safetensors $(DEMO_DIR)/run_clinical/model.safetensors
	$(BIN)/thyrocam evaluate $(DEMO_RUN) $(DEMO_DATA) --report $(DEMO_DIR)/report \
		--ablation image=$(DEMO_DIR)/run_image clinical=$(DEMO_DIR)/run_clinical
	@echo "report: $(DEMO_DIR)/report/report.html"

# One table (machine, latency ratios, HTTP, Ray, torchrun, soak); `--full` for the README sizes.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
