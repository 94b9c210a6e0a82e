"""Real scores, offline, from music21's bundled corpus, plus generated exercises.

``load(name, split)`` returns a :class:`Corpus`, a lazy ``Sequence[Score]``:

* ``"bach-chorales"``: the Bach chorales of music21's ``bach/`` folder (MusicXML, 4-part
  and polyphonic; the keyboard prelude BWV 846 and the Humdrum duplicates are left out).
* ``"essen"``, ``"oneills"``, ``"ryans"``: monophonic folk tunes from the Essen folksong
  collection, O'Neill's *Music of Ireland* (1850) and Ryan's *Mammoth Collection*
  (ABC files, many tunes per file); ``"folk"`` pools all three.
* ``"exercises-scale"``, ``"exercises-arpeggio"``, ``"exercises-random-walk"``,
  ``"exercises-chords"``, ``"exercises-mixed"``: generated on the fly, see :func:`exercises`.
* ``"piano"``, ``"piano-classical"``, ``"piano-generated"``: two-hand piano music with
  performed velocities and sustain pedal (``Score.pedal``), see :mod:`lmm_env.piano_corpus`.

Piece ids are stable strings (``"bach/bwv10.7.mxl"``, ``"essenFolksong/han2.abc#600"``).
Splits are decided by the SHA-1 of the id (80 % train, 10 % validation, 10 % test), so they
are deterministic, machine independent, disjoint, and agree between ``"folk"`` and the
single collections.

Listing a corpus only scans file names and ABC ``X:`` lines (no music21 parse). A piece is
converted by music21 on first access and cached on disk as a small ``.npz`` under
``$LMM_ENV_CACHE`` (or the user cache dir), keyed by collection, music21 version and cache
format; later accesses (in any process) load the ``.npz``.

A fresh machine pays for the conversions as episodes first draw the pieces (~0.04 s a folk
tune on one core; the 9,188 folk train tunes take ~6 minutes, and a batch of thousands of
envs draws most of them at once): :func:`warm` (``lmm-env warm folk``) converts a whole corpus
up front on every core, with a progress bar.

Broken pieces: a tune that music21 cannot parse, or that holds no notes, is marked bad in the
cache and ``corpus[i]`` deterministically falls back to the next valid piece (``i+1``,
``i+2``, ... wrapping around). Indexing, iteration and random draws therefore never fail,
at the price of a few duplicates; :meth:`Corpus.resolve` tells which index was used.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import math
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numpy.lib import format as npy_format

from lmm_env._checks import check_bool, check_int, short_repr
from lmm_env.score import HIGHEST_PITCH, LOWEST_PITCH, Score, ScoreError, _check_keys, _check_policy

__all__ = ["Corpus", "load", "warm", "names", "exercises", "split_of", "cache_dir", "SPLITS", "EXERCISE_KINDS"]

SPLITS = ("train", "validation", "test")
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
EXERCISE_KINDS = ("scale", "arpeggio", "random-walk", "chords", "mixed")
CACHE_FORMAT = 1

# collection name -> music21 corpus sub-folder
_ABC_COLLECTIONS = {"essen": "essenFolksong", "oneills": "oneills1850", "ryans": "ryansMammoth"}
_POOLS = {"folk": ("essen", "oneills", "ryans")}
_REAL = ("bach-chorales", "folk", "essen", "oneills", "ryans")
_PIANO = ("piano", "piano-classical", "piano-generated")  # built by lmm_env.piano_corpus
_EXERCISE_SIZES = {"train": 1000, "validation": 100, "test": 100}
MAX_EXERCISES = 1_000_000  # an exercise corpus lists its ids up front (~100 bytes each)


def names() -> list[str]:
    """Every corpus name :func:`load` accepts."""
    return list(_REAL) + list(_PIANO) + [f"exercises-{k}" for k in EXERCISE_KINDS]


def split_of(piece_id: str) -> str:
    """The split of a piece id: SHA-1 of the id, first 8 bytes, mod 100 -> 80/10/10.

    ``piece_id`` is a piece's id (``Corpus.ids``: ``"bach/bwv10.7.mxl"``); a corpus or split
    name is refused (a ValueError), as is anything but a non-empty str (a TypeError)."""
    if not isinstance(piece_id, str) or not piece_id:
        raise TypeError(f"split_of({short_repr(piece_id)}): give a piece id, a non-empty str such as "
                        "'bach/bwv10.7.mxl' (see Corpus.ids)")
    if piece_id in SPLITS or piece_id in names():  # a likely mix-up: it would hash like any id
        raise ValueError(f"split_of({piece_id!r}): that is a corpus or split name, not a piece id; give an id such "
                         "as 'bach/bwv10.7.mxl' (see Corpus.ids)")
    return _split_of(piece_id)


def _split_of(piece_id: str) -> str:
    h = int.from_bytes(hashlib.sha1(piece_id.encode("utf-8")).digest()[:8], "big") % 100
    if h < 80:
        return "train"
    if h < 90:
        return "validation"
    return "test"


def _check_split(split: str) -> str:
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"unknown split {short_repr(split)}; allowed: {', '.join(SPLITS)}")
    return split


def cache_dir() -> Path:
    """Root of the disk cache: ``$LMM_ENV_CACHE`` or ``platformdirs.user_cache_dir('lmm_env')``."""
    env = os.environ.get("LMM_ENV_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("lmm_env"))


@functools.lru_cache(maxsize=None)
def _music21_root() -> Path:
    """music21's corpus folder, found without importing music21 (a ~1 s import)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("music21 is required for the real corpora: pip install music21")
    return Path(list(spec.submodule_search_locations)[0]) / "corpus"


@functools.lru_cache(maxsize=None)
def _music21_version() -> str:
    try:
        return importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:  # e.g. a source checkout on sys.path
        import music21

        return music21.__version__


# --------------------------------------------------------------------------- listing

_X_LINE = re.compile(r"^X:\s*(\d+)", re.MULTILINE)


def _list_bach() -> list[str]:
    root = _music21_root() / "bach"
    ids = []
    for p in sorted(root.iterdir()):
        if p.suffix not in (".mxl", ".xml") or not p.is_file():
            continue
        if p.stem == "bwv846":  # Well-Tempered Clavier prelude and fugue, not a chorale
            continue
        ids.append(f"bach/{p.name}")
    return ids


def _list_abc(collection: str) -> list[str]:
    folder = _ABC_COLLECTIONS[collection]
    root = _music21_root() / folder
    ids = []
    for p in sorted(root.glob("*.abc")):
        seen: set[int] = set()
        text = p.read_text(encoding="utf-8", errors="replace")
        for m in _X_LINE.finditer(text):
            x = int(m.group(1))
            if x not in seen:  # music21 would parse the first tune of a repeated number
                seen.add(x)
                ids.append(f"{folder}/{p.name}#{x}")
    return ids


def _collection_of(piece_id: str) -> str:
    folder = piece_id.split("/", 1)[0]
    if folder == "bach":
        return "bach-chorales"
    for name, f in _ABC_COLLECTIONS.items():
        if f == folder:
            return name
    raise KeyError(f"piece id {piece_id!r} belongs to no known collection")


_LISTING: dict[str, list[str]] = {}


def _all_ids(collection: str) -> list[str]:
    if collection not in _LISTING:
        _LISTING[collection] = _list_bach() if collection == "bach-chorales" else _list_abc(collection)
    return _LISTING[collection]


# --------------------------------------------------------------------------- conversion


def _convert_music21(piece_id: str) -> Score:
    """Parse one piece with music21 and convert it (raises on failure or no notes)."""
    from music21 import converter

    rel, _, number = piece_id.partition("#")
    path = _music21_root() / rel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if number:
            stream = converter.parse(str(path), number=int(number), forceSource=True)
        else:
            stream = converter.parse(str(path), forceSource=True)
        if hasattr(stream, "scores") and type(stream).__name__ == "Opus":
            stream = stream.scores[0]
        score = Score.from_music21(stream, name=piece_id)
    if len(score) == 0:
        raise ScoreError(f"{piece_id} holds no notes")
    return score


def _cache_path(piece_id: str) -> Path:
    collection = _collection_of(piece_id)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", piece_id)
    digest = hashlib.sha1(piece_id.encode("utf-8")).hexdigest()[:8]
    return (cache_dir() / f"corpus-v{CACHE_FORMAT}" / f"music21-{_music21_version()}" / collection
            / f"{safe}-{digest}.npz")


def _write_npz_atomic(path: Path, **arrays: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# Failures that say nothing about the piece (memory, I/O, a timeout or an interrupt turned
# into an exception): they propagate and the piece is tried again next time.
TRANSIENT_ERRORS = (MemoryError, OSError, RecursionError)


# A cache entry is read, not trusted (a file in a shared cache may be edited or crafted): each array's
# .npy header is checked before its data is read, so no entry makes us allocate more than this many notes
# (corpus pieces hold at most a few thousand), and the notes are validated by the Score constructor.
MAX_CACHED_NOTES = 200_000
_MAX_NAME_CHARS = 1000
_CACHED = {"bad": ("b", 0), "pitches": ("iu", 1), "onsets": ("f", 1), "offsets": ("f", 1),
           "velocities": ("iu", 1), "name": ("U", 0), "bars": ("f", 2), "pedal": ("f", 2)}


def _read_member(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """Array ``key`` of an .npz, its header checked (dtype kind, dimensions, size) before its data is read."""
    kinds, ndim = _CACHED[key]
    with zf.open(key + ".npy") as f:
        version = npy_format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{key}: .npy format {version} is not what np.savez writes")
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        count = math.prod(shape)
        if dtype.hasobject or dtype.kind not in kinds or len(shape) != ndim or count > MAX_CACHED_NOTES or (
                dtype.kind == "U" and dtype.itemsize > 4 * _MAX_NAME_CHARS):
            raise ValueError(f"{key} is {dtype} of shape {shape}")
        data = f.read(count * dtype.itemsize)  # never more than the header's (bounded) size
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{key} is truncated")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _read_cache_entry(path: Path) -> Score | None:
    """The Score a cache file holds (None: a piece marked bad); ValueError etc. if the file is not a valid entry."""
    with zipfile.ZipFile(path) as zf:
        if bool(_read_member(zf, "bad")):
            return None
        arrays = [_read_member(zf, k) for k in ("pitches", "onsets", "offsets", "velocities")]
        # keys and out_of_range="reject": what the conversion wrote lies inside the piano's keys
        return Score(*arrays, name=str(_read_member(zf, "name")), out_of_range="reject")


def _load_cached(piece_id: str) -> Score | None:
    """Score of ``piece_id`` via the disk cache; None if the piece is bad (no notes, unparsable).

    A cache entry that is not valid (unreadable, crafted, too large) is converted again, with a warning."""
    path = _cache_path(piece_id)
    try:
        return _read_cache_entry(path)
    except FileNotFoundError:
        pass  # not cached yet
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        warnings.warn(f"corpus cache entry {str(path)!r} is not a valid cached piece ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); converting {piece_id!r} again", UserWarning, stacklevel=2)
    try:
        score = _convert_music21(piece_id)
    except TRANSIENT_ERRORS:
        raise  # the machine's trouble, not the piece's: never cached as a bad piece
    except Exception as e:  # music21 raises many kinds on malformed tunes
        _write_npz_atomic(path, bad=np.array(True), error=np.array(f"{type(e).__name__}: {e}"))
        return None
    _write_npz_atomic(
        path, bad=np.array(False), pitches=score.pitches, onsets=score.onsets,
        offsets=score.offsets, velocities=score.velocities, name=np.array(score.name),
    )
    return score


# --------------------------------------------------------------------------- Corpus


MEMO_SIZE = 256  # pieces a Corpus keeps in memory (least recently used first out; the disk cache has all)
KEYS_PROBE = 64  # pieces in a row outside ``keys`` (and none inside yet) after which a corpus gives up


class Corpus(Sequence):
    """A lazy, read-only ``Sequence[Score]`` of one corpus split.

    ``len`` is cheap; ``corpus[i]`` builds piece ``i`` on first use (music21 conversion cached
    on disk, or generation for exercises) and keeps the ``MEMO_SIZE`` most recently used in
    memory. A piece that cannot be converted is replaced by the next valid one (see the
    module docstring).

    Attributes:
        name: the corpus name given to :func:`load`.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        ids: the stable string ids of the pieces, in index order.
    """

    def __init__(
        self,
        name: str,
        split: str,
        ids: list[str],
        build: Callable[[str], Score | None],
        *,
        keys: tuple[int, int] | None = None,
        out_of_range: str = "transpose",
    ) -> None:
        self.name = name
        self.split = split
        self.ids = list(ids)
        self._build = build
        self._keys = keys
        self._out_of_range = _check_policy(out_of_range)
        self._memo: OrderedDict[int, Score] = OrderedDict()  # LRU of at most MEMO_SIZE pieces
        self._bad: set[int] = set()
        self._outside: set[int] = set()  # the bad pieces that only fail for lack of notes inside keys
        self._resolved: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _piece(self, i: int) -> Score | None:
        if i in self._memo:
            self._memo.move_to_end(i)
            return self._memo[i]
        if i in self._bad:
            return None
        score = self._build(self.ids[i])
        if score is None:
            self._bad.add(i)
            return None
        if self._keys is not None:
            try:
                score = Score(score.pitches, score.onsets, score.offsets, score.velocities,
                              name=score.name, out_of_range=self._out_of_range, keys=self._keys, pedal=score.pedal)
            except ScoreError:
                if self._out_of_range == "reject":
                    raise
                self._bad.add(i)
                self._outside.add(i)
                return None
            if len(score) == 0:
                self._bad.add(i)
                self._outside.add(i)
                return None
        self._memo[i] = score
        while len(self._memo) > MEMO_SIZE:  # a pool of thousands of pieces must not grow without end
            self._memo.popitem(last=False)
        return score

    def resolve(self, i: int) -> int:
        """The index whose piece ``self[i]`` returns (``i`` itself unless piece ``i`` is bad)."""
        n = len(self)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"corpus indices must be integers, got {type(i).__name__}")
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for corpus {self.name!r} ({self.split}) of {n} pieces")
        i %= n
        if i in self._resolved:
            return self._resolved[i]
        for step in range(n):
            j = (i + step) % n
            if self._piece(j) is not None:
                self._resolved[i] = j
                return j
            if not self._memo and len(self._outside) >= KEYS_PROBE:
                # fail fast: converting thousands of pieces to find none inside keys takes minutes
                raise ScoreError(
                    f"corpus {self.name!r} ({self.split}): none of the {len(self._outside)} pieces tried has notes "
                    f"inside keys={self._keys} with out_of_range={self._out_of_range!r} (e.g. "
                    f"{self.ids[j]!r}); widen keys, or pick a corpus whose pieces fit")
        raise ScoreError(
            f"corpus {self.name!r} ({self.split}) holds no valid piece: {len(self._bad)} of {n} pieces are bad, "
            f"{len(self._outside)} of them for lack of notes inside keys={self._keys} "
            f"(out_of_range={self._out_of_range!r}), the rest unparsable or empty")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        j = self.resolve(i)
        score = self._memo.get(j)
        return score if score is not None else self._piece(j)

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, split={self.split!r}, {len(self)} pieces)"


def load(
    name: str,
    split: str = "train",
    *,
    keys: tuple[int, int] | None = None,
    out_of_range: str = "transpose",
    **exercise_options: Any,
) -> Corpus:
    """The ``split`` of corpus ``name`` (see :func:`names`), as a lazy :class:`Corpus`.

    Args:
        name: a corpus name, e.g. ``"bach-chorales"``, ``"folk"``, ``"exercises-scale"``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        keys: restrict pieces to this inclusive MIDI pitch range (a smaller keyboard):
            real pieces get ``out_of_range`` applied (pieces left empty count as bad);
            exercises are generated inside it.
        out_of_range: policy for real pieces when ``keys`` is given (see :class:`Score`).
        **exercise_options: for ``exercises-*`` only: ``n``, ``difficulty``, ``seed``
            (see :func:`exercises`); ``n`` defaults to 1000 for train and 100 otherwise.

    Raises:
        ValueError: unknown name or split (the message lists the allowed values), or
            exercise options given for a real corpus.
        TypeError: ``name`` is not a str.
    """
    if not isinstance(name, str):
        raise TypeError(f"corpus name must be a str, got {type(name).__name__}: {short_repr(name)}; "
                        f"allowed: {', '.join(names())}")
    _check_split(split)
    _check_policy(out_of_range)  # exercises ignore it, but a typo must not pass (nor fail only at the first piece)
    if name.startswith("exercises-") and name[len("exercises-"):] in EXERCISE_KINDS:
        exercise_options.setdefault("n", _EXERCISE_SIZES[split])
        return exercises(name[len("exercises-"):], split=split,
                         keys=keys if keys is not None else (LOWEST_PITCH, HIGHEST_PITCH),
                         **exercise_options)
    if name not in _REAL and name not in _PIANO:
        raise ValueError(f"unknown corpus {short_repr(name)}; allowed: {', '.join(names())}")
    if exercise_options:
        raise ValueError(
            f"options {sorted(exercise_options)} only apply to exercises-* corpora, not {name!r}"
        )
    if keys is not None:
        keys = _check_keys(keys)
    if name in _PIANO:
        from lmm_env import piano_corpus

        return piano_corpus.load(name, split, keys=keys, out_of_range=out_of_range)
    collections = _POOLS.get(name, (name,))
    ids = [pid for c in collections for pid in _all_ids(c) if _split_of(pid) == split]
    return Corpus(name, split, ids, _load_cached, keys=keys, out_of_range=out_of_range)


# --------------------------------------------------------------------------- warming

WARM_CHUNK = 16  # pieces per task handed to a worker process (ids in order: same files together)


def _warm_chunk(ids: list[str]) -> int:
    """Convert ``ids`` into the disk cache (in a worker process); returns how many are bad."""
    return sum(_load_cached(pid) is None for pid in ids)


def warm(
    name: str,
    splits: str | Sequence[str] = SPLITS,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Convert every piece of real corpus ``name`` into the disk cache now, on ``workers`` processes.

    Pieces already cached are skipped, so a second call returns at once. Use it before a
    run on a fresh machine, where otherwise each piece is converted by music21 the first
    time an episode draws it, inside the env step.

    Args:
        name: a real corpus (``"folk"``, ``"bach-chorales"``, ``"essen"``, ``"oneills"``,
            ``"ryans"``) or a piano corpus (``"piano"``, ...: see :func:`lmm_env.piano_corpus.warm`);
            exercises are generated, not converted.
        splits: one split or several (default: all three).
        workers: processes (default: the cores this process may run on); 1 converts in this
            process. Workers are forked on Linux (no ``__main__`` guard needed in the
            calling script) and spawned elsewhere; if they cannot start, the rest is
            converted in this process with a RuntimeWarning.
        progress: show a tqdm progress bar.

    Returns:
        ``{"pieces": n, "cached": already cached, "converted": n converted now, "bad": of those,
        unparsable or empty}``.
    """
    if name in _PIANO:
        from lmm_env import piano_corpus

        return piano_corpus.warm(name, splits, workers=workers, progress=progress)
    if name not in _REAL:
        raise ValueError(f"corpus {short_repr(name)} cannot be warmed; use a real corpus: {', '.join(_REAL + _PIANO)} "
                         "(exercises-* are generated on the fly, nothing to convert)")
    try:
        splits = (splits,) if isinstance(splits, str) else tuple(splits)
    except TypeError:
        raise ValueError(f"splits={short_repr(splits)} is not allowed; use a split or a sequence of {SPLITS}") from None
    if not splits:
        raise ValueError(f"splits={short_repr(splits)} is empty; use one or more of {SPLITS}")
    for sp in splits:
        _check_split(sp)
    check_bool("progress", progress)
    if workers is None:  # the cores this process may run on (affinity and cgroup CPU sets)
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers={short_repr(workers)} is not allowed; use an int >= 1 (or None: every core)")
    ids = [pid for c in _POOLS.get(name, (name,)) for pid in _all_ids(c) if _split_of(pid) in splits]
    todo = [pid for pid in ids if not _cache_path(pid).is_file()]
    chunks = [todo[i : i + WARM_CHUNK] for i in range(0, len(todo), WARM_CHUNK)]
    from tqdm import tqdm

    bad = 0
    desc = f"warm {name} ({'/'.join(splits)})"
    with tqdm(total=len(todo), desc=desc, unit="piece", disable=not (progress and todo), mininterval=1.0) as bar:
        if workers == 1 or len(chunks) <= 1:
            for chunk in chunks:
                bad += _warm_chunk(chunk)
                bar.update(len(chunk))
        else:
            left = _warm_in_pool(chunks, int(workers), bar)
            bad += left["bad"]
            if left["chunks"]:  # the pool could not start its workers: finish here
                warnings.warn(f"corpus.warm: worker processes failed to start ({left['why']}); converting the "
                              f"remaining {sum(map(len, left['chunks']))} pieces in this process", RuntimeWarning,
                              stacklevel=2)
                for chunk in left["chunks"]:
                    bad += _warm_chunk(chunk)
                    bar.update(len(chunk))
    return {"pieces": len(ids), "cached": len(ids) - len(todo), "converted": len(todo), "bad": bad}


def _warm_in_pool(chunks: list[list[str]], workers: int, bar) -> dict:
    """Run the chunks on a process pool; returns the bad count and the chunks left undone if
    the workers could not start (then ``why`` says why)."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # fork where it is safe (Linux): workers need no re-import of the caller's script, so a
    # script without an ``if __name__ == "__main__":`` guard works; spawn elsewhere.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    pending = {}
    bad = 0
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    try:
        pending = {pool.submit(_warm_chunk, chunk): chunk for chunk in chunks}
        for done in as_completed(pending):
            bad += done.result()
            bar.update(len(pending.pop(done)))
    except BrokenProcessPool as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        return {"bad": bad, "chunks": list(pending.values()), "why": str(exc) or type(exc).__name__}
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # an error (or Ctrl-C) stops the rest at once
        raise
    pool.shutdown()
    return {"bad": bad, "chunks": [], "why": ""}


# --------------------------------------------------------------------------- exercises

_MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic-minor": (0, 2, 3, 5, 7, 8, 11),
}
_CHORDS = {  # pitch classes above the root
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "dominant7": (0, 4, 7, 10),
    "major7": (0, 4, 7, 11),
    "minor7": (0, 3, 7, 10),
}


def _level(difficulty: Any) -> float:
    """Difficulty to a level in [0, 1]: int 1..5 -> (d - 1) / 4; float 0..1 as is."""
    if isinstance(difficulty, (bool, np.bool_)):
        raise ValueError(f"difficulty must be an int 1..5 or a float 0..1, got {short_repr(difficulty)}")
    if isinstance(difficulty, (int, np.integer)):
        if not 1 <= difficulty <= 5:
            raise ValueError(f"difficulty must be an int 1..5 or a float 0..1, got {short_repr(difficulty)}")
        return (int(difficulty) - 1) / 4
    if isinstance(difficulty, (float, np.floating)) and math.isfinite(difficulty) and 0 <= difficulty <= 1:
        return float(difficulty)
    raise ValueError(f"difficulty must be an int 1..5 or a float 0..1, got {short_repr(difficulty)}")


class _Params:
    """Generation knobs derived from the level x in [0, 1]."""

    def __init__(self, x: float, rng: np.random.Generator) -> None:
        self.step = 0.6 * 0.25 ** x  # seconds per note: 0.6 s (x=0) .. 0.15 s (x=1)
        self.span = int(round(12 + 24 * x))  # semitones of the keyboard used: 12 .. 36
        self.vel_spread = int(round(40 * x))  # velocity = 80 +- spread
        self.voices = 2 + int(round(3 * x))  # chord size: 2 .. 5
        self.leap = 1 + int(round(3 * x))  # random walk: max step in scale degrees
        self.rhythm = x >= 0.5  # uneven note lengths from the middle level on
        self.x = x
        self.target = float(rng.uniform(2.6, 8.0))  # upper bound of the exercise length (s)


def _window(rng: np.random.Generator, lo: int, hi: int, span: int) -> tuple[int, int]:
    """A random sub-range of [lo, hi] of width ``span`` (or all of it), centred-ish."""
    width = hi - lo
    if width <= span:
        return lo, hi
    mid_lo, mid_hi = max(lo, 48), min(hi - span, 72 - span // 2)
    if mid_lo > mid_hi:  # keys far from the middle: anywhere inside
        mid_lo, mid_hi = lo, hi - span
    start = int(rng.integers(mid_lo, mid_hi + 1))
    return start, start + span


def _pitch_set(pcs: tuple[int, ...], root_pc: int, lo: int, hi: int) -> np.ndarray:
    allowed = {(root_pc + pc) % 12 for pc in pcs}
    return np.array([p for p in range(lo, hi + 1) if p % 12 in allowed], dtype=np.int64)


def _velocities(rng: np.random.Generator, n: int, spread: int) -> np.ndarray:
    if spread == 0:
        return np.full(n, 80, dtype=np.int64)
    return np.clip(80 + rng.integers(-spread, spread + 1, size=n), 1, 127)


def _durations(rng: np.random.Generator, prm: _Params, n: int) -> np.ndarray:
    if not prm.rhythm:
        return np.full(n, prm.step)
    return prm.step * rng.choice([0.5, 1.0, 1.0, 1.5, 2.0], size=n)


def _line(rng, prm: _Params, pool: np.ndarray, seq_idx: np.ndarray, name: str) -> Score:
    """Monophonic line of ``pool[seq_idx]`` cut or repeated to the target length."""
    n_max = int(math.ceil(8.0 / (0.5 * prm.step))) + 1  # enough notes at the shortest length
    durs = _durations(rng, prm, n_max)
    onsets_all = np.concatenate([[0.0], np.cumsum(durs)[:-1]])
    offsets_all = onsets_all + 0.9 * durs  # slightly detached: repeated keys get released
    # notes that end by the target; target >= 2.6 s and a note lasts <= 0.6 s, so 2..8 s
    n = max(int(np.count_nonzero(offsets_all <= prm.target)), 1)
    reps = -(-n // len(seq_idx))
    idx = np.tile(seq_idx, reps)[:n]
    return Score(pool[idx], onsets_all[:n], offsets_all[:n], _velocities(rng, n, prm.vel_spread), name=name)


def _up_down(k: int) -> np.ndarray:
    up = np.arange(k)
    return np.concatenate([up, up[-2:0:-1]]) if k > 1 else up


def _gen_scale(rng, prm: _Params, lo: int, hi: int, name: str) -> Score:
    mode = ("major", "minor", "harmonic-minor")[int(rng.integers(0, 3 if prm.x > 0.3 else 1))]
    wlo, whi = _window(rng, lo, hi, prm.span)
    pool = _pitch_set(_MODES[mode], int(rng.integers(0, 12)), wlo, whi)
    if len(pool) == 0:
        pool = np.arange(wlo, whi + 1)
    return _line(rng, prm, pool, _up_down(len(pool)), name)


def _gen_arpeggio(rng, prm: _Params, lo: int, hi: int, name: str) -> Score:
    kinds = ("major", "minor") if prm.x < 0.5 else tuple(_CHORDS)
    chord = kinds[int(rng.integers(0, len(kinds)))]
    wlo, whi = _window(rng, lo, hi, prm.span)
    pool = _pitch_set(_CHORDS[chord], int(rng.integers(0, 12)), wlo, whi)
    if len(pool) == 0:
        pool = np.arange(wlo, whi + 1)
    return _line(rng, prm, pool, _up_down(len(pool)), name)


def _gen_random_walk(rng, prm: _Params, lo: int, hi: int, name: str) -> Score:
    wlo, whi = _window(rng, lo, hi, prm.span)
    pool = _pitch_set(_MODES["major"], int(rng.integers(0, 12)), wlo, whi)
    if len(pool) == 0:
        pool = np.arange(wlo, whi + 1)
    k = len(pool)
    n = int(math.ceil(8.0 / (0.5 * prm.step))) + 1  # as many notes as _line can use
    idx = np.empty(n, dtype=np.int64)
    idx[0] = int(rng.integers(0, k))
    steps = rng.integers(1, prm.leap + 1, size=n) * rng.choice([-1, 1], size=n)
    for j in range(1, n):
        nxt = idx[j - 1] + steps[j]
        if nxt < 0 or nxt >= k:  # reflect at the window's edges
            nxt = idx[j - 1] - steps[j]
        idx[j] = min(max(nxt, 0), k - 1)
    return _line(rng, prm, pool, idx, name)


def _gen_chords(rng, prm: _Params, lo: int, hi: int, name: str) -> Score:
    wlo, whi = _window(rng, lo, hi, max(prm.span, 12))
    key_pc = int(rng.integers(0, 12))
    degrees = (0, 5, 7, 9, 2, 4) if prm.x > 0.3 else (0, 5, 7)  # I IV V (vi ii iii)
    chord_dur = 2 * prm.step * (1.5 if prm.x < 0.5 else 1.0)
    n_chords = max(2, min(int(math.ceil(prm.target / chord_dur)), int(8.0 / chord_dur)))
    ps, ons, offs = [], [], []
    for c in range(n_chords):
        deg = degrees[0] if c == 0 else degrees[int(rng.integers(0, len(degrees)))]
        quality = "major" if deg in (0, 5, 7) else "minor"
        if prm.voices >= 4 and rng.random() < 0.5:
            quality = "dominant7" if quality == "major" else "minor7"
        pool = _pitch_set(_CHORDS[quality], (key_pc + deg) % 12, wlo, whi)
        if len(pool) == 0:
            pool = np.arange(wlo, whi + 1)
        v = min(prm.voices, len(pool))
        start = int(rng.integers(0, len(pool) - v + 1))
        notes = pool[start:start + v]
        t = c * chord_dur
        ps.extend(notes.tolist())
        ons.extend([t] * v)
        offs.extend([t + 0.9 * chord_dur] * v)
    n = len(ps)
    return Score(np.array(ps), ons, offs, _velocities(rng, n, prm.vel_spread), name=name)


_GENERATORS = {
    "scale": _gen_scale,
    "arpeggio": _gen_arpeggio,
    "random-walk": _gen_random_walk,
    "chords": _gen_chords,
}


def exercises(
    kind: str = "scale",
    n: int = 100,
    difficulty: int | float = 1,
    seed: int = 0,
    split: str = "train",
    keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH),
) -> Corpus:
    """Generated exercises as a lazy :class:`Corpus` (2-8 s each, deterministic).

    Args:
        kind: ``"scale"`` (major/minor scales up and down), ``"arpeggio"`` (broken triads,
            sevenths at higher difficulty), ``"random-walk"`` (a melody moving by scale steps),
            ``"chords"`` (block-chord progressions) or ``"mixed"`` (each exercise draws one of
            the four kinds).
        n: number of exercises.
        difficulty: an int 1..5 (1 = easiest) or a float level 0.0..1.0 (note: the int ``1``
            is the easiest level, the float ``1.0`` the hardest). The level sets the tempo
            (0.6 s per note at the easiest, 0.15 s at the hardest), the span of keys used
            (an octave to three), the velocity variety (none to +-40 around 80), uneven
            rhythms (from level 0.5), and the chord size (2 to 5 notes).
        seed: exercise ``i`` of a split is a pure function of (kind, difficulty, seed,
            split, i); different splits give different exercises.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        keys: inclusive MIDI pitch range every note stays in (a smaller keyboard).
    """
    if not isinstance(kind, str) or kind not in EXERCISE_KINDS:
        raise ValueError(f"unknown exercise kind {short_repr(kind)}; allowed: {', '.join(EXERCISE_KINDS)}")
    _check_split(split)
    x = _level(difficulty)
    lo, hi = _check_keys(keys)
    n = check_int("n", n, 1, MAX_EXERCISES)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {short_repr(seed)}")
    split_no = SPLITS.index(split)
    kind_no = EXERCISE_KINDS.index(kind)
    level_key = int(round(x * 1000))
    ids = [f"exercises-{kind}/{split}/d{x:.3f}/s{seed}/{i}" for i in range(n)]

    def build(piece_id: str) -> Score:
        i = int(piece_id.rsplit("/", 1)[1])
        rng = np.random.default_rng([int(seed), split_no, kind_no, level_key, i, lo, hi])
        k = kind
        if k == "mixed":
            k = ("scale", "arpeggio", "random-walk", "chords")[int(rng.integers(0, 4))]
        prm = _Params(x, rng)
        return _GENERATORS[k](rng, prm, lo, hi, piece_id)

    return Corpus(f"exercises-{kind}", split, ids, build)
