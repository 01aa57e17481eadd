#!/usr/bin/env python
"""restr-d2: MaskFormer, Mask2Former, Segmenter and ReSTR as a detectron2 plugin.

Install with `make install` (see README): detectron2 is not on PyPI, so `tools/install/install.sh`
installs it first and then this package in editable mode.
"""
from setuptools import find_packages, setup

setup(
    name="restr-d2",
    version="0.1.0",
    description="Transformer segmentation (MaskFormer, Mask2Former, Segmenter, ReSTR) for detectron2",
    # tools, demo: the toolbox's packages (tools.benchmark, tools.convert, ...) and the demos, so
    # that a tool imports its sibling modules as a package from wherever it is run
    packages=find_packages(include=("restr_d2*", "maskformer_d2*", "segmentation_core*", "tools", "tools.*", "demo")),
    # files the code reads beside its modules; tests/tools/test_install.py checks a built wheel
    # holds every such file, so a non-editable install (`pip install .`) works too
    package_data={
        "maskformer_d2.data.datasets": ["_ade20k_full_classes.txt"],
        "demo": ["web_page/*.html", "web_page/*.js", "web_page/*.css"],
    },
    python_requires=">=3.10",
    install_requires=[],  # see requirements/requirements.txt; detectron2 is installed separately
    # segmentation_core.config.load_plugins() imports these: the core finds its plugins without naming them
    entry_points={"restr_d2.plugins": ["maskformer_d2 = maskformer_d2", "restr_d2 = restr_d2"]},
    extras_require={
        # ONNX export and the onnxruntime predictor (tools/export/export_onnx.py, segmentation_core/export);
        # `make install` installs them too (requirements/requirements.txt)
        "export": ["onnx==1.23.2", "onnxruntime==1.32.0", "onnxscript==0.7.2"],
    },
)
