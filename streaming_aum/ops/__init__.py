"""Selective scan and causal conv kernels; ``dispatch`` chooses which one runs."""

from .dispatch import (SCAN_BACKENDS, causal_conv1d, get_scan_backend, resolve_backend,
                       scan_backend, selective_scan, set_scan_backend)

__all__ = ["SCAN_BACKENDS", "causal_conv1d", "get_scan_backend", "resolve_backend",
           "scan_backend", "selective_scan", "set_scan_backend"]
