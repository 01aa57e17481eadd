"""Data code shared by both plugins: the REFER-layout loader and the synthetic ``shapes``
datasets (import ``segmentation_core.data.shapes`` to register them)."""
