"""The benchmark's files: the results table (markdown, CSV, JSON, a summary plot), written row by row
and atomically, read back, and checked when a run resumes a folder."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from lmm_env.agents.registry import TASKS

from lmm_env.agents.benchmark.protocol import COLUMNS, IMPROV_STATS, Plan, _NUMERIC, BenchmarkArgumentError  # noqa: F401


def _row_key(agent, task, K, synth) -> tuple:
    """What makes a row the same row on resume: agent, task, K and instrument."""
    return (str(agent), str(task), str(K), str(synth))


RESULT_FILES = ("results.md", "results.csv", "results.json", "summary.png")


def _identity(plan: Plan) -> dict:
    """What must agree for rows of two runs to share a table: the protocol's numbers, the seed, the training."""
    return _jsonable({"protocol": plan.protocol, "seed": plan.seed, "quick": plan.quick,
                      "train_algo": plan.train_algo, "train_steps": plan.train_steps if plan.train_algo else 0})


def read_results(out) -> dict:
    """The ``results.json`` of a benchmark folder, checked: ``{"rows", "episodes", "notes", "identity", "status"}``.

    Raises `BenchmarkArgumentError` naming the file when it is not a benchmark's results."""
    path = Path(out) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BenchmarkArgumentError(f"{str(path)!r} is not readable benchmark results ({type(exc).__name__}); move it "
                                     "away or pass "
                                     "--overwrite") from None
    ok = (isinstance(doc, dict) and isinstance(doc.get("rows"), list) and isinstance(doc.get("episodes"), list)
          and all(isinstance(r, dict) and {"agent", "task", "pairs", "synth", "kind"} <= set(r) for r in doc["rows"]))
    if not ok:
        raise BenchmarkArgumentError(f"{str(path)!r} does not hold benchmark results (rows of agent, task, K, synth); "
                                     "move it away or pass --overwrite")
    rows = []
    for r in doc["rows"]:  # JSON null is NaN again
        rows.append({k: (math.nan if v is None and k in _NUMERIC else v) for k, v in r.items()})
    return {"rows": rows, "episodes": doc["episodes"], "notes": [str(n) for n in doc.get("notes", [])],
            "identity": doc.get("identity"), "status": doc.get("status", "complete")}


def _prepare_out(out, plan: Plan, resume: bool, overwrite: bool) -> dict | None:
    """Check ``out`` before any work; the results to resume from (or None)."""
    from lmm_env._checks import OutputPathError, writable_dir

    if resume and overwrite:
        raise BenchmarkArgumentError("resume and overwrite exclude each other: resume keeps the rows in out, "
                                     "overwrite replaces them")
    try:
        folder = writable_dir(out, "out")
    except OutputPathError as exc:
        raise BenchmarkArgumentError(str(exc)) from None
    existing = [f for f in RESULT_FILES if (folder / f).exists()]
    if existing == ["results.md", "results.csv", "results.json"] and not overwrite:
        try:  # a run stopped before its first row holds nothing to keep
            if not [r for r in read_results(folder)["rows"] if r.get("kind") != "corpus"]:
                overwrite = True
        except BenchmarkArgumentError:
            pass
    if not existing or overwrite:
        for f in existing:
            (folder / f).unlink()
        return None
    if not resume:
        state = ""
        if (folder / "results.json").exists():
            try:
                found = read_results(folder)
                state = f" ({len(found['rows'])} rows, {found['status']})"
            except BenchmarkArgumentError:
                pass
        raise BenchmarkArgumentError(f"out={os.fspath(out)!r} already holds benchmark results{state}; continue them "
                                     "with resume=True (--resume), replace them with overwrite=True (--overwrite), "
                                     "or choose another folder")
    if not (folder / "results.json").exists():
        raise BenchmarkArgumentError(f"out={os.fspath(out)!r} holds {existing} but no results.json to resume from; "
                                     "pass --overwrite to start again")
    prior = read_results(folder)
    want = _identity(plan)
    if prior["identity"] != want:
        have = prior["identity"] or {}
        diff = sorted(k for k in set(want) | set(have) if have.get(k) != want.get(k))
        if "protocol" in diff and isinstance(have.get("protocol"), dict):
            diff = [d for d in diff if d != "protocol"] + [f"protocol.{k}" for k in sorted(
                set(want["protocol"]) | set(have["protocol"])) if have["protocol"].get(k) != want["protocol"].get(k)]
        raise BenchmarkArgumentError(
            f"out={os.fspath(out)!r} holds results of another protocol (differs in {diff}: "
            f"{ {d: (_get(have, d), _get(want, d)) for d in diff[:4]} } as (there, asked)); rows of two protocols "
            "cannot share a table: resume with the same arguments, choose another folder, or pass --overwrite")
    return prior


def _get(doc: dict, dotted: str):
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _check_sources(rows: list, jobs: list, out) -> None:
    """A checkpoint's stored rows resume only with the same file (its sha256)."""
    source = {e.label: e.source for e, *_ in jobs if e.source}
    for r in rows:
        if r["agent"] in source and r.get("source") not in (None, source[r["agent"]]):
            raise BenchmarkArgumentError(f"out={os.fspath(out)!r} holds rows of checkpoint {r['agent']!r} made from "
                                         "another file of that name (its sha256 differs); rename one, choose another "
                                         "folder, or pass --overwrite")


# --------------------------------------------------------------------------- outputs


def _fmt(c: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if c in ("env_steps", "train_steps", "probe_steps", "episodes"):
        return str(int(v))
    if c in ("wall_seconds", "return", "onset_lag_ms"):
        return f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


_MD_NAMES = {"pairs": "K", "pairs_instrument": "pairs of", "note_f1": "note F1", "onset_offset_f1": "on+off F1", "onset_velocity_f1": "on+vel F1",
             "onset_lag_ms": "onset lag ms", "frame_f1": "frame F1", "velocity_error": "vel. err",
             "keys_deciphered": "keys deciphered", "probe_steps": "probe steps", "judge_nll": "judge NLL",
             "pitch_class_entropy": "PC entropy", "note_density": "notes/s", "repetition": "repetition",
             "in_key_share": "in key", "env_steps": "env steps", "train_steps": "train steps",
             "wall_seconds": "wall s", "return": "return"}


def _has_value(rows, c) -> bool:
    return any(isinstance(r.get(c), (int, float)) and math.isfinite(r.get(c)) and (c != "train_steps" or r[c])
               for r in rows)


def _outside_tag(name: str) -> str:
    """" (outside; <its paired training data>)" for an outside agent (`AgentSpec.pairs_label`)."""
    from lmm_env.agents.registry import AGENTS

    spec = AGENTS.get(name)
    label = getattr(spec, "pairs_label", "") if spec is not None else ""
    return f" (outside; {label})" if label else " (outside)"


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table (columns with no value in any row left out; oracles marked)."""
    cols = ["agent", "task", "pairs", "synth", "pairs_instrument", "episodes"] + [c for c in _NUMERIC if _has_value(rows, c)]
    lines = ["| " + " | ".join(_MD_NAMES.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            if c == "agent":
                tag = {"oracle": " (oracle)", "trained": " (trained)", "corpus": " (held-out corpus)"}.get(r["kind"], "")
                if r["kind"] == "outside":
                    tag = _outside_tag(r["agent"])
                cells.append(f"{r['agent']}{tag}")
            else:
                cells.append(_fmt(c, r.get(c)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol_lines(plan: Plan) -> list[str]:
    p = plan.protocol
    return [
        f"- split `{p['split']}` of `{p['score']}`; episode i plays piece i (`score_index` 0..{plan.episodes - 1}), "
        f"env seed {plan.seed} + i{' (quick)' if plan.quick else ''}",
        f"- LMMPiano-v0 / LMMDecipher-v0 / LMMByEar-v0: first {p['max_seconds']:g} s of each piece; "
        f"LMMImprovise-v0: {p['improvise_prompt_seconds']:g} s prompt (played by the world) + "
        f"{p['improvise_length_seconds']:g} s free play",
        f"- LMMDecipher-v0: keys {tuple(p['decipher_keys'])}, relayout `{p['decipher_relayout']}`, layout seed "
        f"{plan.seed}; only oracles may read the hidden layout (keyboard.reveal() raises HiddenLayoutError otherwise)",
        f"- K (pairs, the reward's ear): {', '.join(map(str, plan.pairs))}; synth: {', '.join(plan.synths)} "
        "(LMMByEar-v0: the target's instrument, the world stays the built-in piano)",
        f"- improvisation reference: {p['corpus_reference_pieces']} held-out pieces each of "
        f"{', '.join(p['corpus_reference_names'])} (`lmm_env.improv.corpus_reference`, first "
        f"{p['improvise_length_seconds']:g} s)",
        "- env steps: every step the agent took on the row's env (episodes, babbling), plus training steps",
        "- note metrics (mir_eval) against the score's own note times, not the frame-snapped copy: note F1 = onset "
        "F1 (50 ms), on+off F1 (offset within 20 % of the note, at least 50 ms), on+vel F1 (mir_eval's velocity "
        "matching), onset lag = median signed onset deviation of matched notes (ms, + = late); frame F1 on the "
        "frame grid (RoboPianist's)",
    ]


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return _jsonable(float(v))
    return v


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a kill mid-write leaves the old file, never half a new one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_outputs(rows: list[dict], out, plan: Plan | None = None, command: str = "", notes=(),
                  episode_rows=(), planned: int | None = None, final: bool = True) -> dict[str, Path]:
    """results.md, results.csv, results.json (and, when ``final``, summary.png) of ``rows`` in ``out``; their paths.

    Each file is replaced atomically. ``final=False`` marks the run partial (``planned`` rows
    in all): `run` writes that after every row, and the complete table at the end."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f for k, f in (("md", "results.md"), ("csv", "results.csv"), ("json", "results.json"),
                                     ("png", "summary.png"))}
    agent_rows = sum(r.get("kind") != "corpus" for r in rows)
    status = "complete" if final else "partial"
    md = ["# lmm_env benchmark", ""]
    if not final:
        md += [f"**Partial run**: {agent_rows} of {planned if planned is not None else '?'} rows done so far (a run "
               "that is still going, or one that was stopped). Continue it with the same command and `--resume`.", ""]
    md += ["Command:", "", "```", command, "```", ""]
    if plan is not None:
        md += ["Protocol:", ""] + _protocol_lines(plan) + [""]
    md += ["(oracle): reads what the task hides (the score, the hidden layout, the reference notes); "
           "–: not applicable or not measured.", "", markdown_table(rows), ""]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    _write_atomic(paths["md"], "\n".join(md))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if (isinstance(r.get(c), float) and not math.isfinite(r[c])) else r.get(c, "")
                    for c in COLUMNS])
    _write_atomic(paths["csv"], buf.getvalue())
    doc = {"status": status, "rows_done": agent_rows, "rows_planned": planned, "command": command,
           "protocol": _jsonable(plan.protocol) if plan else None,
           "identity": _identity(plan) if plan else None,
           "pairs": _jsonable(list(plan.pairs)) if plan else None, "synths": list(plan.synths) if plan else None,
           "seed": plan.seed if plan else None, "columns": list(COLUMNS), "rows": _jsonable(rows),
           "episodes": _jsonable(list(episode_rows)), "notes": list(notes)}
    _write_atomic(paths["json"], json.dumps(doc, indent=1))
    if final:
        buf = io.BytesIO()
        _plot(rows, buf)
        _write_atomic(paths["png"], buf.getvalue())
    return paths


def _plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(r, multi):
        tag = " *" if r["oracle"] else ""
        return f"{r['agent']}{tag}" + (f" K={r['pairs']} {r['synth']}" if multi else "")

    agent_rows = [r for r in rows if r["kind"] != "corpus"]
    multi = len({(r["pairs"], r["synth"]) for r in agent_rows}) > 1
    f1_tasks = [t for t in TASKS if any(r["task"] == t and math.isfinite(r["note_f1"]) for r in agent_rows)]
    f1_labels = list(dict.fromkeys(label(r, multi) for r in agent_rows if r["task"] in f1_tasks))
    dec = [r for r in agent_rows if r["task"] == "LMMDecipher-v0" and math.isfinite(r["keys_deciphered"])]
    imp = [r for r in rows if r["task"] == "LMMImprovise-v0"]
    n_rows = 1 + bool(imp)
    fig = plt.figure(figsize=(15, 4.5 * n_rows + 0.3 * max(0, len(f1_labels) - 8)))
    gs = fig.add_gridspec(n_rows, 5)
    ax = fig.add_subplot(gs[0, :3] if dec else gs[0, :])
    if f1_tasks and f1_labels:
        grid = np.full((len(f1_labels), len(f1_tasks)), np.nan)
        for r in agent_rows:
            if r["task"] in f1_tasks:
                grid[f1_labels.index(label(r, multi)), f1_tasks.index(r["task"])] = r["note_f1"]
        cmap = plt.get_cmap("viridis").copy()
        cmap = cmap.with_extremes(bad="0.85")
        ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(f1_tasks)), f1_tasks, fontsize=8)
        ax.set_yticks(range(len(f1_labels)), f1_labels, fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "–" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and v < 0.6 else "black")
        ax.set_title("note F1 (agent x task; * = oracle, grey = does not play)", fontsize=10)
    else:
        ax.axis("off")
        ax.set_title("note F1: no task with notes to compare", fontsize=10)
    if dec:
        ax2 = fig.add_subplot(gs[0, 3:])
        labels = [label(r, multi) for r in dec]
        ax2.barh(range(len(dec)), [r["keys_deciphered"] for r in dec], color="tab:orange")
        ax2.set_yticks(range(len(dec)), labels, fontsize=8)
        ax2.set_xlim(0, 1)
        ax2.invert_yaxis()
        for i, r in enumerate(dec):
            ax2.text(min(r["keys_deciphered"], 0.88) + 0.01, i, f"{r['keys_deciphered']:.2f}", va="center", fontsize=8)
        ax2.set_title("LMMDecipher-v0: keys deciphered", fontsize=10)
    if imp:
        labels = [label(r, multi) if r["kind"] != "corpus" else r["agent"] for r in imp]
        colors = ["tab:green" if r["kind"] == "corpus" else "tab:blue" for r in imp]
        for j, stat in enumerate(IMPROV_STATS):
            a = fig.add_subplot(gs[1, j])
            vals = [r[stat] for r in imp]
            err = None
            if any("range" in r for r in imp):
                lo = [max(0.0, r[stat] - r["range"][stat][0]) if "range" in r and math.isfinite(r[stat]) else 0.0
                      for r in imp]
                hi = [max(0.0, r["range"][stat][1] - r[stat]) if "range" in r and math.isfinite(r[stat]) else 0.0
                      for r in imp]
                err = np.nan_to_num(np.array([lo, hi]))
            a.barh(range(len(imp)), np.nan_to_num(vals), xerr=err, color=colors)
            a.set_yticks(range(len(imp)), labels if j == 0 else [""] * len(imp), fontsize=7)
            a.invert_yaxis()
            if stat in ("judge_nll", "note_density") and max(np.nan_to_num(vals), default=0) > 50:
                a.set_xscale("symlog")
            a.set_title(stat, fontsize=9)
        fig.text(0.01, 0.01, "LMMImprovise-v0: blue = agents, green = held-out corpus (bars p10-p90)", fontsize=8)
    fig.tight_layout(rect=(0, 0.03 if imp else 0, 1, 1))
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
