"""Benchmark helpers behind ``tools/benchmark/benchmark.py``: interleaved timing statistics, peak-memory
measurement in a subprocess per case, FLOP counting and the machine's dense-matmul rate, model
adapters for our detectron2 models and their Hugging Face peers, and report writers."""
from .stats import summarize  # noqa: F401
from .timing import interleaved_timings, time_calls  # noqa: F401
