from . import backbone, language, restr, segmenter  # noqa: F401  (registration)
