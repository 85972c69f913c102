# `make demo` and `make test` are the two set-up commands of the README. Both create .venv/ if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ASSETS ?= .cache/assets
export REJAX_ASSETS := $(abspath $(ASSETS))
PYTEST_WORKERS ?= 2

.PHONY: install lint test test-slow demo bench clean

install: $(STAMP)

# torch first, with pip: its pinned CPU wheel is found by pip's configuration (uv does not read it),
# and nothing later may pull a CUDA build. The rest through uv for speed, pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0 uv
	$(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e '.[dev]'
	touch $@

# The conventions you can run (pyproject.toml [tool.ruff]): part of `make test`, so CI checks them.
lint: $(STAMP)
	$(VENV)/bin/ruff check .

# --dist loadfile: a module's tests run in one worker, so its module-scoped fixtures (a reference training run, a
# simulated pod's run, the exports) are built once, not once per worker.
test: $(STAMP) lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

demo: $(STAMP)
	$(VENV)/bin/python -m rejax.demo

bench: $(STAMP)
	$(PY) -m bench.encode
	$(PY) -m bench.train_step
	$(PY) -m bench.eval
	$(PY) -m bench.data

clean:
	rm -rf $(VENV) .cache .pytest_cache
