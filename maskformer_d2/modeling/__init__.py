from . import backbone, meta_arch, pixel_decoder, transformer_decoder  # noqa: F401  (registration)
