"""Fixed sinusoidal position encoding of the official ReSTR language encoder."""
import math

import torch

__all__ = ["sinusoidal_position_encoding"]


def sinusoidal_position_encoding(length: int, dim: int) -> torch.Tensor:
    """(length, dim) float32 table: ``sin(p * w_i)`` at even channels 2i, ``cos(p * w_i)`` at
    odd channels 2i+1, ``w_i = exp(-2i * ln(10000) / dim)``; computed in the official order of
    operations so it matches bit for bit."""
    if dim % 2:
        raise ValueError(f"the sinusoidal position encoding needs an even dim, got {dim}")
    pe = torch.zeros(length, dim)
    position = torch.arange(0, length).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * -(math.log(10000.0) / dim))
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe
