"""Pick the torch device a model runs on.

One rule for every ``device`` option (the metrics' networks, orv-augment's models), so
``auto`` means the same everywhere: the first CUDA GPU when there is one, else the CPU.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available else ``cpu``; anything else is passed to torch.

    Asking for CUDA on a machine without it is an error here, not a crash deep inside a
    network call.
    """
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was asked for but torch sees no CUDA GPU")
    return device
