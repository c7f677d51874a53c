"""Build and load the fused CPU neighbourhood-attention kernel (``na2d_kernel.cpp``) on first use.

Why a kernel of our own: no maintained library gives a fast CPU neighbourhood attention for this
torch (NATTEN's CPU backend was a naive per-pixel loop, built per torch version, and left NATTEN
at 0.20; its current releases are CUDA-only), and the pure-torch paths spend their time in copies and
thousands of small ops (``results/benchmarks/pna_profile_cpu.md``). The kernel is plain C++ with
GCC vector extensions and ``std::thread``: no torch headers, so it compiles in a few seconds
(``torch.utils.cpp_extension`` would compile torch's headers for about a minute) and is called
through ``ctypes`` with the tensors' data pointers.

The shared library is cached in ``$PNA_CACHE_DIR`` (default ``$XDG_CACHE_HOME/pna`` or
``~/.cache/pna``) under ``native/``, named by a hash of the source, the compiler's version, the
flags and the CPU's instruction sets (``-march=native``), and built atomically (a temporary file
renamed), so concurrent processes are safe. Compiling takes about 3 CPU seconds. Without a C++
compiler (``$CXX``, else ``g++``/``c++``), when the build fails, or with ``PNA_NATIVE_NA=0``,
:func:`library` returns None and :mod:`pna.ops.na2d` uses its pure-torch paths (one warning says why).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("na2d_kernel.cpp")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")
ENV_SWITCH = "PNA_NATIVE_NA"  # "0": never build or load the kernel


def cache_dir() -> Path:
    """Where built kernels are kept: ``$PNA_CACHE_DIR/native``, else ``$XDG_CACHE_HOME/pna/native``."""
    root = os.environ.get("PNA_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pna"
    return Path(root) / "native"


def compiler() -> str | None:
    """The C++ compiler to use: ``$CXX``, else the first of g++ / c++ on PATH."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_features() -> str:
    """The CPU's instruction-set flags (``-march=native`` builds differ from one CPU to another)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build_key(cxx: str) -> str:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    text = "\n".join([SOURCE.read_text(), version, " ".join(FLAGS), _cpu_features()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(cxx: str, out: Path) -> None:
    """Compile the kernel to ``out`` (atomically: a temporary file in the same folder, renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp.so", dir=out.parent)
    os.close(fd)
    try:
        done = subprocess.run([cxx, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"{cxx} failed on {SOURCE.name}: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64p, i32 = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int
    lib.pna_na2d_sizes.argtypes = [i32, i32, i32, i32, i64p]
    for suffix in ("f32", "f64"):
        getattr(lib, f"pna_na2d_forward_{suffix}").argtypes = [p, i64p, p, i64p, p, i64p, p, i64p, p, i64p,
                                                                 p, p, p, p, p, i64p, i32]
        getattr(lib, f"pna_na2d_backward_{suffix}").argtypes = [p, i64p, p, p, p, p, i64p, p, p, i64p, p, i64p,
                                                                  p, i64p, p, i32]
    return lib


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel, built on first use; None where it cannot be (see the module docstring)."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    cxx = compiler()
    if cxx is None:
        warnings.warn("no C++ compiler (set CXX or install g++): neighbourhood attention runs its slower "
                      "pure-torch CPU paths", RuntimeWarning, stacklevel=2)
        return None
    try:
        path = cache_dir() / f"na2d_{_build_key(cxx)}.so"
        if not path.exists():
            build(cxx, path)
        return _declare(ctypes.CDLL(str(path)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(f"the CPU neighbourhood-attention kernel could not be built ({error}); the slower "
                      "pure-torch CPU paths run instead", RuntimeWarning, stacklevel=2)
        return None


def available() -> bool:
    """Whether the fused CPU kernel can be used (building it now if needed)."""
    return library() is not None
