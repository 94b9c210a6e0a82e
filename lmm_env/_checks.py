"""Small argument checks shared by the core, the envs and the agents (one message style).

* `short_repr`: a value as it appears in an error message, cut to a readable length (a
  list of a million samples must not become a million-character message).
* `check_int`: an int (not a bool) in a range, named in the error.
* `writable_dir` / `writable_file`: an output path checked *before* the work that will
  write it, so a long run never fails at its end for a bad ``--out``.
"""
from __future__ import annotations

import math
import os
import reprlib
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["short_repr", "check_bool", "check_int", "check_real", "check_seed", "writable_dir", "writable_file", "OutputPathError",
           "check_cli_output", "check_cli"]

_REPR = reprlib.Repr()
_REPR.maxstring = 120
_REPR.maxother = 120
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def short_repr(value) -> str:
    """``repr(value)`` cut to about 120 characters; arrays by shape and dtype."""
    if isinstance(value, np.generic):  # a numpy scalar reads as its value
        return repr(value.item())
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (str, bytes)):  # a tensor
        return f"{type(value).__name__}(shape={tuple(value.shape)}, dtype={value.dtype})"
    text = _REPR.repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int if it is an integer (not a bool) in ``[lo, hi]``; else a ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name}={short_repr(value)} is not allowed; use an int in [{lo}, {hi}]")
    return int(value)


def check_real(name: str, value, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float if it is a real number (not a str or bool), finite and in ``[lo, hi]``
    (open ends with ``lo_open`` / ``hi_open``); else a ValueError naming ``name`` and the range.

    The constructors whose config a checkpoint holds check every float with this: a file's
    NaN or 1e300 must fail when it is loaded, naming the value, not later as a NaN reward."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        try:
            v = float(value)
        except OverflowError:  # an int beyond float range
            ok = False
        else:
            ok = math.isfinite(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    if not ok:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name}={short_repr(value)} is not allowed; use a finite number in {span}")
    return v


def check_bool(name: str, value) -> bool:
    """``value`` as a bool if it is one (numpy's included), else a ValueError naming ``name``: "no" and 1 are not flags."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={short_repr(value)} is not allowed; use True or False")
    return bool(value)


def check_seed(seed, name: str = "seed"):
    """``seed`` if it is None or an int >= 0 (what numpy's generators take), else a ValueError naming it."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name}={short_repr(seed)} is not allowed; use None or an int >= 0")
    return int(seed)


class OutputPathError(ValueError):
    """An output path that cannot be written (a file where a folder is needed, no permission, ...)."""


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path, what: str = "out", create: bool = True) -> Path:
    """``path`` as a folder this process can write into, checked now (and made, with ``create``).

    Raises `OutputPathError` (a ValueError) naming ``what`` when ``path`` is a file, lies
    inside a file, or cannot be written (permissions, a read-only disk)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise OutputPathError(f"{what}={short_repr(path)} is not allowed; give a folder path")
    p = Path(os.fspath(path)).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{what}={os.fspath(path)!r} is a file, not a folder; give a folder path")
    base = _first_existing(p.absolute())
    if base != p.absolute() and not base.is_dir():
        raise OutputPathError(f"{what}={os.fspath(path)!r} lies inside {str(base)!r}, which is a file, not a folder")
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{what}={os.fspath(path)!r} cannot be created: {exc.strerror or exc}") from None
        probe = p
    else:
        probe = base
    try:  # permissions, read-only mounts and full quotas only show on a real write
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".lmm_env-write-check-"):
            pass
    except OSError as exc:
        raise OutputPathError(f"{what}={os.fspath(path)!r} is not writable: {exc.strerror or exc}") from None
    return p


def writable_file(path, what: str = "out", overwrite: bool = True) -> Path:
    """``path`` as a file this process can write, checked now (its folder is made).

    Refuses a folder, a path inside a file, an unwritable folder, and (``overwrite=False``)
    an existing file."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise OutputPathError(f"{what}={short_repr(path)} is not allowed; give a file path")
    p = Path(os.fspath(path)).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{what}={os.fspath(path)!r} is a folder; give a file path")
    if p.exists() and not overwrite:
        raise OutputPathError(f"{what}={os.fspath(path)!r} already exists; remove it or choose another path")
    writable_dir(p.parent if str(p.parent) else Path("."), what=f"the folder of {what}")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputPathError(f"{what}={os.fspath(path)!r} exists and is not writable")
    return p


def check_cli_output(parser, path, what: str = "--out", suffix: str | None = ".safetensors") -> None:
    """For training scripts: ``parser.error`` (one line, exit 2) now, before the run, if ``path`` cannot be written."""
    if path is None:
        return
    if suffix and not str(path).endswith(suffix):
        parser.error(f"{what} {str(path)!r} must end in {suffix}")
    try:
        writable_file(path, what)
    except OutputPathError as exc:
        parser.error(str(exc))


def check_cli(parser, check, option: str, value, *bounds, **kw):
    """For scripts: ``check(option, value, *bounds, **kw)`` (e.g. `check_int`, `check_real`), its ValueError
    turned into ``parser.error`` (one line, exit 2) before the run: ``check_cli(ap, check_int, "--steps", 0, 1, 10)``."""
    try:
        return check(option, value, *bounds, **kw)
    except ValueError as exc:
        parser.error(str(exc))
