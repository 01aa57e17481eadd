"""Data code shared by both plugins: the REFER-layout loader and the synthetic ``shapes``
datasets (import ``d2_common.data.shapes`` to register them)."""
