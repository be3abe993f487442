"""Fake torch for the worker subprocess in tests (see ../README.md): a CPU-only machine, no CUDA."""
from types import SimpleNamespace

__version__ = "0.0.0+fake"
version = SimpleNamespace(cuda=None)
cuda = SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)
