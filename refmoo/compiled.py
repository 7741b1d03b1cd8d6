"""refmoo's compiled kernels: build on first use, or fall back to the eager code.

``csrc/kernels.cpp`` defines two PyTorch custom operators: ``mgda_tiles``
(:mod:`refmoo.fused_mgda`, bucketwise(MGDA) on equal chunks in one pass over G) and
``min_norm_guesses`` (the support guesses of :mod:`refmoo.min_norm` for large
batches of small Grams). :func:`available` compiles them with
``torch.utils.cpp_extension`` (a C++ compiler and ninja; about 10 s, cached per
machine under ``TORCH_EXTENSIONS_DIR``) the first time they are needed. Without a
compiler it warns once and refmoo keeps its eager path; ``REFMOO_FUSED=0`` skips
the kernels altogether. Either way the answers carry the same certificates.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "kernels.cpp"
ENVIRONMENT_SWITCH = "REFMOO_FUSED"
# -ffp-contract=off: no fused multiply-add where the CPU has one (bits would depend
# on the CPU), except the one the kernel issues itself on exact products (float32
# entries in double), where it rounds as a multiply and an add do; -fno-math-errno
# lets sqrt be one instruction (no result changes);
# -fopenmp: at::parallel_for is OpenMP in PyTorch's CPU builds, inlined from its
# header, so without it the kernels run on one thread (the libgomp it links is the
# one PyTorch has already loaded: same soname).
COMPILE_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_built: bool | None = None


def available() -> bool:
    """Whether the kernels can run here (built on the first call; see the module
    docstring)."""
    global _built
    with _lock:
        if _built is None:
            _built = _build()
        return _built


def ops():
    """The operators (``torch.ops.refmoo_fused``); call only after :func:`available`."""
    return torch.ops.refmoo_fused


def _build() -> bool:
    if os.environ.get(ENVIRONMENT_SWITCH, "1") == "0":
        return False
    if _registered():
        return True
    try:
        _load_extension()
    except Exception as exc:  # no compiler, no ninja, no write access to the cache
        warnings.warn(
            f"refmoo could not build its compiled kernels ({type(exc).__name__}: {exc}); "
            f"it keeps its eager path. Set {ENVIRONMENT_SWITCH}=0 to skip the build.",
            RuntimeWarning, stacklevel=5)
        return False
    return True


def _registered() -> bool:
    return hasattr(torch.ops.refmoo_fused, "mgda_tiles")


def _load_extension() -> None:
    from torch.utils.cpp_extension import load

    isa, flags = _vector_flags()
    log.info("building refmoo's compiled kernels for %s (once per machine, about 10 s)", isa)
    load(name=f"refmoo_kernels_{isa}", sources=[str(SOURCE)],
         extra_cflags=COMPILE_FLAGS + flags, extra_ldflags=["-fopenmp"],
         is_python_module=False, verbose=False)


def _vector_flags() -> tuple[str, list[str]]:
    """AVX2 and FMA where PyTorch found them on this CPU (its AVX2 level requires FMA3;
    the name is in the build's, so a cache shared with another CPU never hands over
    the wrong build). Lanes are independent, and the one fused multiply-add is on
    exact products (float32 entries in double), where it rounds as a multiply and an
    add do: both builds give the same bits (tested)."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return "avx2", ["-mavx2", "-mfma"]  # PyTorch's AVX2 level requires FMA3 too
    return "baseline", []
