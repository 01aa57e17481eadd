"""Model code both plugins use: mask losses."""
from .losses import dice_loss  # noqa: F401
