"""Code shared by ``maskformer_d2`` and ``restr_d2``: detectron2 compatibility checks and the
embedded synthetic ``shapes`` datasets."""
