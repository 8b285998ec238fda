"""Where training runs: GPU discovery, memory growth, mixed precision.

The GPU path is kept here, apart from everything else, so that the CPU
fallback is one clear branch: :func:`describe_device` says which device a run
gets and why, and :func:`prepare_device` configures TensorFlow for it.
Importing this module imports TensorFlow; the GUI calls it off its thread.
This module never imports Qt.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from typing import Any

__all__ = ["describe_device", "prepare_device", "cpu_reason"]


def _cuda_advice() -> str:
    """How to get the CUDA libraries: the pip extra, or (in the desktop build) the system."""
    if getattr(sys, "frozen", False):
        return "install CUDA 12 and cuDNN 9 system-wide, or use the GPU build; see docs/INSTALL.md, 'GPU support'"
    return "pip install 'tilewatch[gpu]' brings them"


def cpu_reason() -> str:
    """Say in plain words why no GPU is used (best effort, never raises)."""
    import tensorflow as tf

    if not tf.test.is_built_with_cuda():
        return f"this TensorFlow build has no CUDA support ({_cuda_advice()})"
    has_driver = os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")
    if not has_driver:
        return "no NVIDIA driver found"
    if not any(glob.glob(os.path.join(p, "libcudart.so*")) for p in _library_dirs()):
        return f"NVIDIA driver found but no CUDA libraries ({_cuda_advice()})"
    return "TensorFlow found no usable GPU (see the log for CUDA errors)"


def _library_dirs() -> list[str]:
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64", "/usr/lib64"]
    try:
        import nvidia  # type: ignore[import-not-found]  # the and-cuda pip wheels

        for base in nvidia.__path__:
            dirs += glob.glob(os.path.join(base, "*", "lib"))
    except ImportError:
        pass
    return dirs


def prepare_device() -> None:
    """Enable memory growth on every visible GPU (before any op runs).

    Memory growth lets the GUI, TensorBoard and a second run share the card.
    Calling it after TensorFlow has initialised the GPUs is harmless.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: growth is fixed by then
            pass


def describe_device() -> dict[str, Any]:
    """Describe the device a run will train on.

    Returns:
        ``{"kind": "gpu"|"cpu", "name", "memory_mb", "gpus": [...],
        "reason", "mixed_precision_available", "tensorflow"}``. ``reason``
        says why the CPU is used (empty on a GPU). Mixed precision is
        available only on a GPU with compute capability 7.0 or newer.
    """
    import tensorflow as tf

    prepare_device()
    gpus = tf.config.list_physical_devices("GPU")
    info: dict[str, Any] = {
        "kind": "cpu",
        "name": "CPU",
        "memory_mb": None,
        "gpus": [],
        "reason": "",
        "mixed_precision_available": False,
        "tensorflow": tf.__version__,
    }
    if not gpus:
        info["name"] = f"CPU ({os.cpu_count()} cores)"
        info["reason"] = cpu_reason()
        return info
    names = []
    mixed = False
    memory = None
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
        capability = details.get("compute_capability")
        if capability and tuple(capability) >= (7, 0):
            mixed = True
    try:
        memory = _gpu_memory_mb()
    except Exception:  # noqa: BLE001 - memory size is informative only
        memory = None
    info.update(
        kind="gpu",
        name=names[0],
        gpus=names,
        memory_mb=memory,
        mixed_precision_available=mixed,
    )
    return info


def _gpu_memory_mb() -> int | None:
    """Total memory of the first GPU in MiB, from nvidia-smi when present."""
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    out = subprocess.run(
        [smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.split()
    return int(out[0]) if out else None
