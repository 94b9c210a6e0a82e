"""A user's own performance corpus on disk: MAESTRO (v3 layout) or a folder of MIDI files.

Nothing is downloaded: point these at a copy you already have.

* :func:`load_maestro` reads a MAESTRO root (``maestro-v3.0.0.csv`` or ``.json`` beside
  the ``2004/ ... 2018/`` folders of MIDI and WAV files; v2's ``maestro-v2.0.0.csv`` works
  too) and returns the performances of one split as :class:`~lmm_env.score.Score` objects
  with the pianist's velocities and sustain pedal (``Score.pedal``, from MIDI CC64).
  :func:`maestro_pairs` gives ``(Score, wav path)`` pairs for ``LMMByEar-v0``
  (``target=`` the WAV, ``reference=`` the Score), and :func:`maestro_index` the rows
  themselves (composer, title, year, paths) without reading any MIDI.
* :func:`load_midi_folder` reads every ``.mid`` / ``.midi`` under a folder (GiantMIDI-Piano,
  or your own files); its splits are decided by the SHA-1 of each file's path relative to the
  folder (80 % train, 10 % validation, 10 % test, as :func:`lmm_env.corpus.split_of`), so
  they are deterministic and do not change when files are added.

The lists they return are what the envs' ``score=`` takes::

    from lmm_env.performances import load_maestro, maestro_pairs
    env = gym.make("LMMPiano-v0", score=load_maestro("~/data/maestro-v3.0.0", "test",
                                                       segment_seconds=20, limit=10))
    score, wav = maestro_pairs("~/data/maestro-v3.0.0", "test", limit=1)[0]
    env = gym.make("LMMByEar-v0", target=wav, reference=score)

Performances last minutes: ``segment_seconds`` cuts each into consecutive pieces (a note
belongs to the piece its onset falls in), ``limit`` keeps the first performances only
(reading a MAESTRO MIDI file takes ~0.3 s).
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmm_env._checks import check_bool, check_int, short_repr
from lmm_env.corpus import SPLITS, _split_of
from lmm_env.score import HIGHEST_PITCH, LOWEST_PITCH, MAX_SECONDS, Score, ScoreError, _check_keys, _check_policy

__all__ = ["Performance", "maestro_index", "load_maestro", "maestro_pairs", "midi_folder_index", "load_midi_folder",
           "MAESTRO_FILES", "SPLIT_CHOICES", "MIDI_SUFFIXES"]

SPLIT_CHOICES = SPLITS + ("all",)
MAESTRO_FILES = ("maestro-v3.0.0.csv", "maestro-v3.0.0.json", "maestro-v2.0.0.csv", "maestro-v2.0.0.json")
MAESTRO_REQUIRED = ("split", "midi_filename")
MAESTRO_COLUMNS = ("canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
                   "duration")
MIDI_SUFFIXES = (".mid", ".midi")


@dataclass(frozen=True)
class Performance:
    """One performance of a corpus on disk (a MAESTRO row, or a MIDI file of a folder).

    Attributes:
        id: the MIDI file's path relative to the corpus root (POSIX separators); the name of
            its Score.
        midi_path: the MIDI file.
        audio_path: its recording (MAESTRO's WAV), or None (a folder of MIDI files, or a
            MAESTRO copy without audio: the "MIDI only" download).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        composer, title, year, duration: MAESTRO's metadata ("" / None elsewhere).
    """

    id: str
    midi_path: Path
    audio_path: Path | None
    split: str
    composer: str = ""
    title: str = ""
    year: int | None = None
    duration: float | None = None

    def score(self, *, out_of_range: str = "transpose",
              keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH)) -> Score:
        """The performance's notes, velocities and pedal (``Score.from_midi``), named ``id``."""
        return Score.from_midi(self.midi_path, name=self.id, out_of_range=out_of_range, keys=keys)


# --------------------------------------------------------------------------- argument checks


def _check_split(split: Any) -> str:
    if not isinstance(split, str) or split not in SPLIT_CHOICES:
        raise ValueError(f"unknown split {short_repr(split)}; allowed: {', '.join(SPLIT_CHOICES)}")
    return split


def _check_root(root: Any, what: str) -> Path:
    if isinstance(root, bytes) or not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(root).__name__}: {short_repr(root)}")
    path = Path(os.path.expanduser(os.fspath(root)))
    if not path.exists():
        raise FileNotFoundError(2, f"{what} does not exist", str(path))
    return path


def _check_limit(limit: Any) -> int | None:
    return None if limit is None else check_int("limit", limit, 1, 10**9)


def _check_segment(segment_seconds: Any) -> float | None:
    if segment_seconds is None:
        return None
    ok = not isinstance(segment_seconds, (bool, np.bool_)) and isinstance(segment_seconds, (int, float, np.integer,
                                                                                            np.floating))
    if not ok or not (math.isfinite(segment_seconds) and 1.0 <= segment_seconds <= MAX_SECONDS):
        raise ValueError(f"segment_seconds={short_repr(segment_seconds)} is not allowed; use None (whole "
                         f"performances) or a number of seconds in [1, {MAX_SECONDS:g}]")
    return float(segment_seconds)


# --------------------------------------------------------------------------- MAESTRO


def _find_metadata(root: Path) -> tuple[Path, Path]:
    """(metadata file, the folder its paths are relative to) of a MAESTRO root or metadata file."""
    if root.is_file():
        if root.suffix.lower() not in (".csv", ".json"):
            raise ValueError(f"{str(root)!r} is not a MAESTRO metadata file; give the MAESTRO folder or its "
                             f".csv / .json ({', '.join(MAESTRO_FILES)})")
        return root, root.parent
    for name in MAESTRO_FILES:
        if (root / name).is_file():
            return root / name, root
    others = sorted(p for p in root.glob("maestro-v*") if p.suffix.lower() in (".csv", ".json") and p.is_file())
    if others:
        return others[-1], root
    raise FileNotFoundError(2, f"no MAESTRO metadata in this folder: expected one of {', '.join(MAESTRO_FILES)} "
                               "(MAESTRO v3 layout: the .csv or .json beside the year folders of MIDI and WAV "
                               "files)", str(root))


def _read_rows(meta: Path) -> list[dict[str, Any]]:
    """The metadata's rows as dicts (CSV: one a line; JSON: MAESTRO's column-oriented dict, or
    a list of row objects)."""
    try:
        if meta.suffix.lower() == ".csv":
            with open(meta, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = reader.fieldnames or []
                rows = list(reader)
        else:
            with open(meta, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
                columns = list(data)
                keys = sorted({k for v in data.values() for k in v}, key=lambda k: (len(str(k)), str(k)))
                rows = [{c: data[c].get(k) for c in columns} for k in keys]
            elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
                rows = data
                columns = sorted({k for r in rows for k in r})
            else:
                raise ValueError("expected MAESTRO's column-oriented object ({column: {row: value}}) or a list of "
                                 "row objects")
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, ValueError) as exc:
        raise ValueError(f"MAESTRO metadata {str(meta)!r} cannot be read: {exc}") from None
    missing = [c for c in MAESTRO_REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"MAESTRO metadata {str(meta)!r} lacks the column(s) {', '.join(missing)}; MAESTRO v3 has "
                         f"{', '.join(MAESTRO_COLUMNS)}")
    return rows


def _optional_float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def maestro_index(root: str | os.PathLike, split: str = "test", *, require_audio: bool = False,
                  limit: int | None = None) -> list[Performance]:
    """The rows of a MAESTRO copy's ``split`` (in the metadata's order), its files checked.

    Args:
        root: the MAESTRO folder (``maestro-v3.0.0/``) or its metadata file.
        split: ``"train"``, ``"validation"``, ``"test"`` (MAESTRO's own split column) or
            ``"all"``.
        require_audio: every row's WAV must exist (else it may be missing: ``audio_path`` None).
        limit: keep the first ``limit`` rows of the split.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no metadata, or a row's MIDI file
            (or WAV, with ``require_audio``) is missing: the message names the row and the path.
        ValueError: an unknown split, metadata without the ``split`` / ``midi_filename``
            columns, a row whose split is not one of MAESTRO's three, or no row in ``split``.
    """
    split = _check_split(split)
    check_bool("require_audio", require_audio)
    limit = _check_limit(limit)
    meta, base = _find_metadata(_check_root(root, "MAESTRO root"))
    rows = _read_rows(meta)
    out: list[Performance] = []
    line = 2 if meta.suffix.lower() == ".csv" else 0  # a CSV row's line number (the header is line 1)
    for i, row in enumerate(rows):
        where = f"line {line + i}" if line else f"row {i}"
        sp = row.get("split")
        if sp not in SPLITS:
            raise ValueError(f"MAESTRO metadata {str(meta)!r} {where}: split {short_repr(sp)} is not one of "
                             f"{', '.join(SPLITS)}")
        if split != "all" and sp != split:
            continue
        midi_name = row.get("midi_filename")
        if not isinstance(midi_name, str) or not midi_name:
            raise ValueError(f"MAESTRO metadata {str(meta)!r} {where}: midi_filename {short_repr(midi_name)} is not "
                             "a file name")
        midi = base / midi_name
        if not midi.is_file():
            raise FileNotFoundError(2, f"MAESTRO metadata {str(meta)!r} {where} names a MIDI file that is missing",
                                    str(midi))
        audio_name = row.get("audio_filename")
        audio = base / audio_name if isinstance(audio_name, str) and audio_name else None
        if audio is not None and not audio.is_file():
            if require_audio:
                raise FileNotFoundError(2, f"MAESTRO metadata {str(meta)!r} {where} names a WAV file that is "
                                           "missing (the MIDI-only download has none)", str(audio))
            audio = None
        elif audio is None and require_audio:
            raise ValueError(f"MAESTRO metadata {str(meta)!r} {where} names no audio_filename")
        year = _optional_float(row.get("year"))
        out.append(Performance(
            id=Path(midi_name).as_posix(), midi_path=midi, audio_path=audio, split=sp,
            composer=str(row.get("canonical_composer") or ""), title=str(row.get("canonical_title") or ""),
            year=None if year is None else int(year), duration=_optional_float(row.get("duration"))))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"MAESTRO metadata {str(meta)!r} has no performance in split {split!r} "
                         f"({len(rows)} rows in all)")
    return out


def _segments(score: Score, seconds: float | None) -> list[Score]:
    """``score`` cut into consecutive pieces of ``seconds`` (a note goes with its onset; the
    pedal is clipped to each piece), named ``<name>@<k>``; empty pieces are left out."""
    if seconds is None:
        return [score]
    out = []
    n = int(math.ceil(max(score.onsets.max(initial=0.0), 1e-9) / seconds + 1e-9))
    for k in range(max(n, 1)):
        a, b = k * seconds, (k + 1) * seconds
        keep = (score.onsets >= a) & (score.onsets < b)
        if not keep.any():
            continue
        off = score.offsets[keep]
        end = float(off.max())
        ped = score.pedal[(score.pedal[:, 1] > a) & (score.pedal[:, 0] < end)]
        ped = np.stack([np.maximum(ped[:, 0], a), np.minimum(ped[:, 1], end)], axis=1) - a
        out.append(Score(score.pitches[keep], score.onsets[keep] - a, off - a, score.velocities[keep],
                         name=f"{score.name}@{k}", pedal=ped[ped[:, 1] > ped[:, 0]]))
    return out


def _scores(items: list[Performance], segment_seconds, out_of_range, keys, skip_unreadable: bool) -> list[Score]:
    out: list[Score] = []
    for item in items:
        try:
            score = item.score(out_of_range=out_of_range, keys=keys)
        except ScoreError as exc:
            if not skip_unreadable:
                raise
            warnings.warn(f"skipping {str(item.midi_path)!r}: {exc}", UserWarning, stacklevel=3)
            continue
        out += _segments(score, segment_seconds)
    return out


def load_maestro(root: str | os.PathLike, split: str = "test", *, limit: int | None = None,
                 segment_seconds: float | None = None, out_of_range: str = "transpose",
                 keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH),
                 skip_unreadable: bool = False) -> list[Score]:
    """The performances of a MAESTRO copy's ``split`` as Scores (velocities and pedal from the MIDI).

    Args:
        root, split, limit: see :func:`maestro_index` (``limit`` counts performances).
        segment_seconds: cut each performance into consecutive pieces of this many seconds
            (named ``<midi path>@<k>``); None keeps whole performances.
        out_of_range, keys: passed to ``Score.from_midi``.
        skip_unreadable: leave out (with a warning) a MIDI file that cannot be read, instead
            of raising its ScoreError.

    Raises what :func:`maestro_index` raises, and ScoreError for an unreadable MIDI file.
    """
    segment_seconds = _check_segment(segment_seconds)
    _check_policy(out_of_range)
    keys = _check_keys(keys)
    check_bool("skip_unreadable", skip_unreadable)
    return _scores(maestro_index(root, split, limit=limit), segment_seconds, out_of_range, keys, skip_unreadable)


def maestro_pairs(root: str | os.PathLike, split: str = "test", *,
                  limit: int | None = None) -> list[tuple[Score, Path]]:
    """``(Score, WAV path)`` of each performance of ``split``, for ``LMMByEar-v0``
    (``target=wav, reference=score``). Every row needs its WAV (a FileNotFoundError names
    the first one missing), and every WAV must be readable by soundfile (a ValueError names it)."""
    import soundfile

    out = []
    for item in maestro_index(root, split, require_audio=True, limit=limit):
        try:
            soundfile.info(str(item.audio_path))
        except RuntimeError as exc:  # soundfile's LibsndfileError
            raise ValueError(f"{str(item.audio_path)!r} (the recording of {item.id!r}) is not a readable audio "
                             f"file: {exc}") from None
        out.append((item.score(), item.audio_path))
    return out


# --------------------------------------------------------------------------- MIDI folders


def midi_folder_index(path: str | os.PathLike, split: str = "test", *, recursive: bool = True,
                      limit: int | None = None) -> list[Performance]:
    """The ``.mid`` / ``.midi`` files under ``path`` (sorted by relative path) in ``split``.

    A file's split is :func:`lmm_env.corpus.split_of` of its path relative to ``path``
    (POSIX separators): SHA-1, 80 / 10 / 10. ``split="all"`` takes every file.

    Raises:
        FileNotFoundError: ``path`` does not exist. NotADirectoryError: it is a file.
        ValueError: an unknown split, no MIDI file under ``path``, or none in ``split``.
    """
    split = _check_split(split)
    check_bool("recursive", recursive)
    limit = _check_limit(limit)
    root = _check_root(path, "MIDI folder")
    if not root.is_dir():
        raise NotADirectoryError(20, "a MIDI folder must be a directory (for one file, pass its path as score=)",
                                 str(root))
    files = [p for p in (root.rglob("*") if recursive else root.iterdir())
             if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()]
    rel = sorted((p.relative_to(root).as_posix(), p) for p in files)
    if not rel:
        raise ValueError(f"no MIDI files ({', '.join(MIDI_SUFFIXES)}) under {str(root)!r}"
                         + ("" if recursive else " (recursive=False: sub-folders not searched)"))
    out = [Performance(id=r, midi_path=p, audio_path=None, split=_split_of(r)) for r, p in rel]
    if split != "all":
        out = [x for x in out if x.split == split]
    if not out:
        raise ValueError(f"none of the {len(rel)} MIDI files under {str(root)!r} falls in split {split!r} (splits "
                         "by SHA-1 of the relative path, 80/10/10); use split='all' for a small folder")
    return out[:limit] if limit is not None else out


def load_midi_folder(path: str | os.PathLike, split: str = "test", *, recursive: bool = True,
                     limit: int | None = None, segment_seconds: float | None = None,
                     out_of_range: str = "transpose", keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH),
                     skip_unreadable: bool = False) -> list[Score]:
    """The MIDI files of :func:`midi_folder_index` as Scores (velocities and sustain pedal),
    named by their relative paths; ``segment_seconds``, ``out_of_range``, ``keys`` and
    ``skip_unreadable`` as in :func:`load_maestro`."""
    segment_seconds = _check_segment(segment_seconds)
    _check_policy(out_of_range)
    keys = _check_keys(keys)
    check_bool("skip_unreadable", skip_unreadable)
    items = midi_folder_index(path, split, recursive=recursive, limit=limit)
    return _scores(items, segment_seconds, out_of_range, keys, skip_unreadable)
