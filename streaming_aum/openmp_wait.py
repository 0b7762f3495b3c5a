"""How long torch's idle OpenMP threads spin, set for processes that import this package first.

Why: torch's CPU ops run on an OpenMP thread team (GNU libgomp in the pip wheels). After each
parallel region, a worker thread spin-waits for the next one before it sleeps: libgomp's
default is ``GOMP_SPINCOUNT`` = 300,000 iterations of the ``pause`` instruction, which costs
~140 cycles on current Intel cores, so a worker burns its core for ~10-20 ms after every
matmul. This package's own kernels (the numba scan, conv, softplus and gate) run on its own
thread pool right after torch's projections. While a torch worker spins on a core, the pool
thread scheduled on that core gets half of it. Measured on the 2-core dev machine, AuM-B on a
10 s clip with 2 threads (BENCHMARKS.md, "Offline: AuM vs AST-B"): the scan kernel's wall time
fell from 0.29-0.37 s to 0.22-0.27 s, and the whole forward from ~1.10 s to ~0.97 s, with
``GOMP_SPINCOUNT=1000`` (~50 us of spinning).

Why not ``OMP_WAIT_POLICY=PASSIVE`` (no spinning at all): it was as fast offline, but a
streaming hop with 2 threads went from ~2.9 ms to 3.2-5.0 ms p50 (p99 5-18 ms) in alternating
runs (a later probe saw no difference, so the risk is not certain). A hop runs
dozens of small torch ops a few microseconds apart, and a sleeping worker takes tens of
microseconds to wake for each of them. A short spin keeps the workers awake within a hop and
frees the core between an offline layer's matmul and its scan.

What: at ``import streaming_aum``, when torch is not imported yet and none of
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME`` is set, set ``GOMP_SPINCOUNT``
(``SPIN_COUNT``) and, for torch builds on Intel's OpenMP runtime (conda, some distributions),
``KMP_BLOCKTIME`` = 1 ms (its default is 200 ms; the unit is whole milliseconds in older
versions, so 1 is its shortest non-zero spin). That one was reasoned from its documentation,
not measured here: the wheels here use libgomp. libgomp and Intel's runtime read these
variables once, when torch loads them: importing torch before this package leaves them
unchanged (``STATUS`` says so; libgomp's spin count is an unexported variable, so there is no
way to change it afterwards).
Child processes inherit the variables.

``STREAMING_AUM_OPENMP=keep`` leaves OpenMP alone; ``auto`` (the default) applies the above.
This module must not import torch.
"""

from __future__ import annotations

import os
import sys
import warnings

ENV_CHOICE = "STREAMING_AUM_OPENMP"
CHOICES = ("auto", "keep")
SPIN_COUNT = "1000"  # libgomp pause iterations: ~50 us on the dev machine's cores
BLOCK_TIME_MS = "1"  # Intel / LLVM OpenMP: ms a worker spins before sleeping (default 200)
USER_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SETTINGS = {"GOMP_SPINCOUNT": SPIN_COUNT, "KMP_BLOCKTIME": BLOCK_TIME_MS}  # what ``apply`` sets

# What ``apply`` did in this process: "set GOMP_SPINCOUNT=1000 KMP_BLOCKTIME=1", or why not
STATUS = "not applied yet"
# The variables ``apply`` set in this process's environment, with their values
SET_HERE: dict[str, str] = {}


def apply(environ: dict[str, str] | None = None, torch_loaded: bool | None = None) -> str:
    """Set the spin variables in ``environ`` (default ``os.environ``) when allowed (see the
    module docstring); returns and records (``STATUS``) what it did. ``torch_loaded``
    defaults to whether torch is in ``sys.modules``.

    A ``STREAMING_AUM_OPENMP`` other than ``auto`` or ``keep`` leaves OpenMP alone, with a
    RuntimeWarning that names the accepted values."""
    global STATUS
    env = os.environ if environ is None else environ
    loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    choice = env.get(ENV_CHOICE, "auto").strip().lower()
    user = [name for name in USER_VARIABLES if name in env]
    if choice not in CHOICES:
        # a warning, not an error: a typo in an environment variable must not break the import
        reason = (f"{ENV_CHOICE}={env[ENV_CHOICE]!r} is not one of {', '.join(CHOICES)}: "
                  f"OpenMP left as it is")
        status = f"kept ({reason})"
        warnings.warn(f"{reason}; auto shortens the OpenMP spin-wait of torch's idle threads, "
                      f"keep leaves OpenMP alone", RuntimeWarning, stacklevel=2)
    elif choice == "keep":
        status = f"kept ({ENV_CHOICE}=keep)"
    elif user:
        status = "kept (set by the user: " + ", ".join(f"{n}={env[n]}" for n in user) + ")"
    elif loaded:
        status = ("kept (torch was imported before streaming_aum: OpenMP had already read its "
                  "settings)")
    else:
        env.update(SETTINGS)
        status = "set " + " ".join(f"{k}={v}" for k, v in SETTINGS.items())
        if environ is None:
            SET_HERE.update(SETTINGS)
    if environ is None:
        STATUS = status
    return status


def without_package_settings(environ: dict[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the variables ``apply`` set in this process (where they
    still hold its values): the environment as the user gave it, for a child process that
    should run with OpenMP's own defaults (``aum bench offline``'s AST-B)."""
    return {k: v for k, v in environ.items() if SET_HERE.get(k) != v}
