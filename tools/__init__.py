"""The toolbox: one sub-package per job (install, convert, benchmark, analysis, data, demo).

Each tool is a script (``python tools/<job>/<tool>.py --help``); a tool that needs a sibling
module imports it as a package (``from tools.convert.hf_mask2former import ...``): the
repository is installed editable (``make install``), so nothing edits ``sys.path``.
"""
