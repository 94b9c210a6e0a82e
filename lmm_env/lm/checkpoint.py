"""Saving and loading lmm_env's language models and ears: safetensors + a JSON config.

A checkpoint is one ``.safetensors`` file. Its metadata holds the model class name and its
constructor config as JSON; a human-readable copy of that config sits beside it as
``<name>.json``. Loading reads tensors only (safetensors never executes code), checks the
class against a fixed registry and the tensor names and shapes against the constructed
model, and raises `CheckpointError` naming the file and what is wrong.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from lmm_env._checks import check_cli, check_int, check_real, short_repr

FORMAT_VERSION = "1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# Model classes a checkpoint may name: class name -> "module:attribute". Only these are built.
MODEL_CLASSES = {
    "ScoreLM": "lmm_env.lm.score_lm:ScoreLM",
    "AudioLM": "lmm_env.lm.audio_lm:AudioLM",
    "LearnedEar": "lmm_env.lm.ear:LearnedEar",
    "MotionLM": "lmm_env.lm.motion_lm:MotionLM",
}

# Shipped models by name -> file in WEIGHTS_DIR (or a callable building a weightless model).
PRETRAINED = {
    "score": "score_lm.safetensors",
    # an independent ScoreLM (validation split, other width and seed) that judges improvisation
    # (lmm_env.improv); never the reward's model. Its training command is in judge_lm.json.
    "judge": "judge_lm.safetensors",
    "audio": "audio_lm.safetensors",
    "ear": "ear.safetensors",
    "ear-analytic": "lmm_env.lm.ear:AnalyticEar",
    # LM^M: notes with velocity and hold, conditioned on what it read (lmm_env.lm.motion_lm)
    "motion": "motion_lm.safetensors",
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match its model."""


def _path_arg(path, what: str = "checkpoint") -> Path:
    """``path`` as a Path if it is a str or os.PathLike, else a CheckpointError (not pathlib's TypeError)."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise CheckpointError(f"{what} path {short_repr(path)} is not allowed; give the path of a .safetensors file "
                              "(a str or pathlib.Path)")
    return Path(path)


def _check_file(path: Path, what: str = "checkpoint") -> None:
    if path.is_dir():
        raise CheckpointError(f"{what} {str(path)!r} is a directory, not a file; give the path of a .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")


# --------------------------------------------------------------------------- fit before allocating
#
# A checkpoint's config decides the size of the model it builds; a file of a few KB could
# otherwise ask for a layer of millions of units and allocate gigabytes before the tensors
# are compared. Every loader here (and the agents' loaders) first builds the model on
# torch's "meta" device (shapes only, no memory), compares those shapes with the tensor
# shapes in the file's header (no tensor read), and only then builds the model for real.


def header_shapes(path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a safetensors file holds, read from its header only."""
    return {k: shape for k, (shape, _) in _header(path).items()}


# safetensors' dtype codes -> torch's names (what `skeleton_dtypes` gives)
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def header_dtypes(path) -> dict[str, str]:
    """Name -> dtype ("float32", "int64", ...: torch's names) of every tensor a safetensors file holds, from its header."""
    return {k: dtype for k, (_, dtype) in _header(path).items()}


def _header(path) -> dict[str, tuple[tuple[int, ...], str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            out = {}
            for k in f.keys():
                sl = f.get_slice(k)
                code = sl.get_dtype()
                out[k] = (tuple(int(d) for d in sl.get_shape()), _DTYPE_NAMES.get(code, code.lower()))
            return out
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable safetensors file: {exc}") from None


def skeleton_shapes(build) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the state dict of the module ``build()`` makes, built on the meta device (no memory)."""
    return {k: tuple(v.shape) for k, v in skeleton_state(build).items()}


def skeleton_dtypes(build) -> dict[str, str]:
    """Name -> dtype name ("float32", ...) of the state dict of the module ``build()`` makes (meta device, no memory)."""
    return tensor_dtypes(skeleton_state(build))


def tensor_dtypes(tensors: dict) -> dict[str, str]:
    """Name -> dtype name ("float32", ...) of torch tensors (a state dict, or tensors already read)."""
    return {k: str(v.dtype).removeprefix("torch.") for k, v in tensors.items()}


def skeleton_state(build) -> dict:
    """The state dict of the module ``build()`` makes, built on torch's meta device (shapes and dtypes, no memory)."""
    import torch

    with torch.device("meta"):
        module = build()
    return module.state_dict()


def check_fits(path, expected: dict, held: dict, what: str, *, expected_dtypes: dict | None = None,
               held_dtypes: dict | None = None) -> None:
    """Refuse a file whose tensors (``held``: name -> shape) are not exactly ``expected``'s, naming what differs.

    With ``expected_dtypes`` (name -> dtype name, e.g. `skeleton_dtypes`), also refuse a tensor
    stored in another dtype (``held_dtypes``, default `header_dtypes(path)`): loading would cast
    it silently (an int64 copy of float weights is not the model that was saved)."""
    missing = sorted(set(expected) - set(held))
    extra = sorted(set(held) - set(expected))
    wrong = [(k, held[k], expected[k]) for k in sorted(set(expected) & set(held)) if tuple(held[k]) != tuple(expected[k])]
    if not (missing or extra or wrong):
        if expected_dtypes is not None:
            _check_dtypes(path, expected_dtypes, header_dtypes(path) if held_dtypes is None else held_dtypes, what)
        return
    parts = []
    if missing:
        parts.append(f"missing tensors {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
    if extra:
        parts.append(f"tensors it does not use {extra[:5]}" + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""))
    if wrong:
        k, got, want = wrong[0]
        parts.append(f"tensor {k!r} has shape {tuple(got)} where its config builds {tuple(want)}"
                     + (f" (+{len(wrong) - 1} more shapes differ)" if len(wrong) > 1 else ""))
    raise CheckpointError(f"checkpoint {str(path)!r} does not fit the {what} its own config builds: "
                          + "; ".join(parts) + " (the file is damaged, edited, or from another version)")


def _check_dtypes(path, expected: dict, held: dict, what: str) -> None:
    unread = sorted(set(expected) - set(held))
    if unread:  # a caller's bug (e.g. names with a prefix stripped from the shapes only): never a silent pass
        raise TypeError(f"check_fits: held_dtypes lacks {unread[:5]}; give it the names ``held`` has")
    wrong = [(k, held[k], want) for k, want in sorted(expected.items()) if held[k] != want]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the {what} its own config builds: tensor {k!r} "
                              f"is {got} where the {what} holds {want}"
                              + (f" (+{len(wrong) - 1} more tensors of another dtype)" if len(wrong) > 1 else "")
                              + "; loading would cast it (the file is damaged, edited, or from another version)")


def check_finite(path, tensors: dict) -> None:
    """Refuse non-finite (NaN, inf) floating-point tensors, naming the file and the tensors."""
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all()))
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r} holds non-finite (NaN or inf) weights in {bad[:5]}; "
                              "the run that wrote it diverged: use an earlier checkpoint or refit it")


def _import(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def save_checkpoint(model, path, extra: dict | None = None) -> Path:
    """Write ``model`` (a torch module with a ``config`` dict) to ``path`` atomically.

    ``extra`` (JSON-serializable) is stored beside the config, e.g. training metrics.
    """
    from safetensors.torch import save_file

    cls = type(model).__name__
    if cls not in MODEL_CLASSES:
        raise CheckpointError(f"cannot save a {cls}; savable classes: {', '.join(MODEL_CLASSES)}")
    path = _path_arg(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path {str(path)!r} must end in .safetensors")
    if extra is not None and not isinstance(extra, dict):  # read_metadata wants a JSON object: refuse it now
        raise CheckpointError(f"extra={short_repr(extra)} is not allowed; give a dict (JSON-serializable) or None")
    config = dict(model.config)
    meta = {"class": cls, "config": json.dumps(config), "format_version": FORMAT_VERSION}
    if extra:
        try:
            meta["extra"] = json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"extra={short_repr(extra)} is not JSON-serializable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors writes through a private temp file (mode 600)
    os.replace(tmp, path)  # atomic: a crash mid-write leaves the old file
    side = {"class": cls, "config": config, "format_version": FORMAT_VERSION}
    if extra:
        side["extra"] = extra
    path.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
    return path


def read_metadata(path) -> dict:
    """The checkpoint's class, config and extra, without building the model."""
    from safetensors import safe_open

    path = _path_arg(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable safetensors file: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION or "class" not in meta or "config" not in meta:
        raise CheckpointError(
            f"checkpoint {str(path)!r} lacks lmm_env metadata (class, config, format_version={FORMAT_VERSION}); "
            "save models with lmm_env.lm.save_checkpoint"
        )
    config = json_object(path, "config", meta["config"])
    extra = json_object(path, "extra", meta["extra"]) if "extra" in meta else {}
    return {"class": meta["class"], "config": config, "extra": extra}


def json_object(path, key: str, text, error=CheckpointError) -> dict:
    """The JSON object a file's metadata ``key`` holds, else ``error`` naming the file and the key.

    Deeply nested JSON (``[[[...]]]``) raises RecursionError inside json: refused here too."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError, TypeError) as exc:
        why = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise error(f"checkpoint {str(path)!r}: its metadata {key!r} is not valid JSON ({why})") from None
    if not isinstance(value, dict):
        raise error(f"checkpoint {str(path)!r}: its metadata {key!r} is not a JSON object: {short_repr(value)}")
    return value


def load_checkpoint(path, expect: str | None = None):
    """Build the model a checkpoint names and load its weights (eval mode, no grad).

    ``expect`` (a class name) makes loading, say, an AudioLM where a ScoreLM is wanted an error.
    """
    from safetensors.torch import load_file

    path = _path_arg(path)
    meta = read_metadata(path)
    cls_name = meta["class"]
    if cls_name not in MODEL_CLASSES:
        raise CheckpointError(f"checkpoint {str(path)!r} names class {cls_name!r}; known: {', '.join(MODEL_CLASSES)}")
    if expect is not None and cls_name != expect:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {cls_name}, not the {expect} asked for")
    cls = _import(MODEL_CLASSES[cls_name])
    config = meta["config"]
    try:  # the constructors bound every size; the meta build allocates nothing
        skeleton = skeleton_state(lambda: cls(**config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} has a config {cls_name} does not accept: {exc}") from None
    check_fits(path, {k: tuple(v.shape) for k, v in skeleton.items()}, header_shapes(path), cls_name,
               expected_dtypes=tensor_dtypes(skeleton))
    model = cls(**config)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {exc}") from exc
    check_finite(path, state)
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.checkpoint_extra = meta["extra"]
    if hasattr(model, "refresh"):
        model.refresh()  # let the model rebuild caches derived from its weights
    return model


_CACHE: dict[object, object] = {}


def _cache_key(key: str):
    """A shipped name as is; a file by its real path, mtime and size (the same name elsewhere, or a
    replaced file, is another model); None for a path that cannot be read (loading names the error)."""
    if key in PRETRAINED:
        return key
    try:
        st = os.stat(key)
    except (OSError, ValueError):
        return None
    return (os.path.realpath(key), st.st_mtime_ns, st.st_size)


def load_pretrained(name_or_path, *, cached: bool = True):
    """A shipped model by name ("score", "judge", "audio", "ear", "ear-analytic") or a saved file.

    "judge" is a second ScoreLM, trained on the validation split, that `lmm_env.improv`
    scores improvisations with, so that they are not judged by the reward's own "score" LM.

    Named models are loaded once per process and shared (frozen, eval mode): envs that
    build LM rewards reuse them. Pass ``cached=False`` for a private copy.
    """
    key = os.fspath(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if key is None:
        raise CheckpointError(f"load_pretrained({short_repr(name_or_path)}): pass a name ({', '.join(PRETRAINED)}) or a path")
    if not isinstance(cached, (bool, np.bool_)):
        raise CheckpointError(f"cached={short_repr(cached)} is not allowed; use True or False")
    ck = _cache_key(key) if cached else None  # stamped before loading: a file replaced meanwhile is reloaded
    if ck is not None and ck in _CACHE:
        return _CACHE[ck]
    if key in PRETRAINED:
        target = PRETRAINED[key]
        if ":" in target:
            model = _import(target)()
        else:
            path = WEIGHTS_DIR / target
            if not path.is_file():
                raise CheckpointError(
                    f"the shipped {key!r} weights ({path}) are missing; reinstall lmm_env or rebuild them with "
                    f"`python -m lmm_env.lm.train {key.split('-')[0]}`"
                )
            model = load_checkpoint(path)
    elif key.endswith(".safetensors") or os.sep in key or os.path.exists(key):
        model = load_checkpoint(key)
    else:
        raise CheckpointError(f"unknown model {key!r}; shipped: {', '.join(PRETRAINED)}, or a .safetensors path")
    if ck is not None:
        if isinstance(ck, tuple):  # forget the models of earlier versions of this file
            for old in [k for k in _CACHE if isinstance(k, tuple) and k[0] == ck[0]]:
                del _CACHE[old]
        _CACHE[ck] = model
    return model


# --------------------------------------------------------------------------- training scripts

MAX_TRAIN_MINUTES = 7 * 24 * 60  # a week: a longer --minutes is a typo
TRAIN_INT_OPTIONS = {"steps": (1, 10**7), "threads": (1, 256), "seed": (0, 2**32 - 1), "eval_pieces": (0, 10**6),
                     "max_pieces": (0, 10**6), "batch": (1, 1 << 16)}


def check_train_options(parser, args, **int_bounds) -> None:
    """``parser.error`` (exit 2) now, before any data is made, for a common training option out of range
    (``--steps 0`` would fail in the LR schedule, ``--minutes -1`` would save a 1-step model).

    Checks those of `TRAIN_INT_OPTIONS` (updated with ``int_bounds``: dest -> (lo, hi)) that ``args`` has,
    ``--minutes`` in (0, a week] and ``--lr`` in (0, 10]."""
    for dest, (lo, hi) in {**TRAIN_INT_OPTIONS, **int_bounds}.items():
        if hasattr(args, dest):
            check_cli(parser, check_int, "--" + dest.replace("_", "-"), getattr(args, dest), lo, hi)
    if hasattr(args, "minutes"):
        check_cli(parser, check_real, "--minutes", args.minutes, 0.0, MAX_TRAIN_MINUTES, lo_open=True)
    if hasattr(args, "lr"):
        check_cli(parser, check_real, "--lr", args.lr, 0.0, 10.0, lo_open=True)


def check_model_options(parser, build) -> None:
    """``parser.error`` now if the model ``build()`` makes refuses its options (built on the meta device: no memory)."""
    try:
        skeleton_state(build)
    except ValueError as exc:
        parser.error(f"model options: {exc}")
