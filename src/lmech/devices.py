"""Device and dtype names, checked before any work starts.

``resolve_device("cuda")`` on a machine without CUDA raises :class:`BadInput` (the CLI exits 2)
instead of failing deep inside training. Experiments take the device and dtype as config fields and
pass them explicitly; nothing here changes torch's global defaults.
"""

from __future__ import annotations

import re

import torch

from lmech.errors import BadInput

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` ("cpu", "cuda", "cuda:N", "mps"), checked to exist here."""
    if not isinstance(name, str) or not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise BadInput("device", name, "cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInput("device", name, "cpu: CUDA is not available on this machine "
                           f"(torch {torch.__version__} sees no GPU)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise BadInput("device", name, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadInput("device", name, "cpu: MPS is not available on this machine")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype for ``name`` ("float32" or "float64")."""
    if name not in DTYPES:
        raise BadInput("dtype", name, f"one of {', '.join(DTYPES)}")
    return DTYPES[name]


def describe_device(device: torch.device | str) -> str:
    """A human-readable name of the device, recorded with every run (e.g. the GPU model)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return device.type
