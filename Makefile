# The two commands of the README: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo test test-slow bench clean-data

install:
	@VENV=$(VENV) bash tools/install/install.sh

# Train a small model on the embedded synthetic dataset, evaluate it, write visualizations.
demo: install
	@bash tools/demo/demo.sh

# The test suite CI runs (long training runs are marked `slow` and excluded), in TEST_WORKERS
# pytest-xdist processes (one per core of CI's 2; tests sharing an expensive fixture stay in one
# worker: tests/conftest.py XDIST_GROUPS). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest tests -m "not slow" -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest tests -m slow -q $(PYTEST_ARGS)

# Time the models on this machine against the Hugging Face peer (docs/benchmarks.md: method,
# figures, every preset); BENCH_ARGS replaces the default case, e.g. BENCH_ARGS="--list".
BENCH_ARGS ?= --preset m2f_swin_t_panoptic --size 512 512 --batch 2 --reps 5 --warmup 1 --threads 2 --modes network end_to_end train memory flops
bench: install
	$(PY) tools/benchmark/benchmark.py $(BENCH_ARGS)

clean-data:
	rm -rf datasets/shapes output/demo
