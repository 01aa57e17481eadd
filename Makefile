# The two commands of the README: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench clean-data

install:
	@VENV=$(VENV) bash tools/install.sh

# Train a small model on the embedded synthetic dataset, evaluate it, write visualizations.
demo: install
	@bash tools/demo.sh

# The test suite CI runs (long training runs are marked `slow` and excluded).
test: install
	$(PY) -m pytest tests -m "not slow" -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest tests -m slow -q $(PYTEST_ARGS)

clean-data:
	rm -rf datasets/shapes output/demo
