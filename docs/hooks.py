"""MkDocs hook of the lmm_env site (``hooks: [docs/hooks.py]`` in mkdocs.yml).

Everything here runs at build time, so nothing generated is ever committed stale:

- ``on_startup``: lays ``lmm_env`` out as it is installed (``envs/`` and ``agents/`` under it,
  as setup.py's ``package_dir`` does) in ``build/docs_src/`` as symlinks, for griffe to read
  every module statically (nothing is imported). It must exist before mkdocstrings reads its
  ``paths`` (a missing one is dropped silently, and griffe then finds ``./lmm_env`` without them).
- ``on_config``: expands the ``*`` entries of the nav (``guide/*.md``: whatever guide pages
  exist; ``agents/*.md``: one page per registered agent).
- ``on_files``: adds a page per agent of `lmm_env.agents.registry.AGENTS` (``agents/<name>.md``).
- ``on_page_markdown``: fills the markers of the hand-written pages:

  - ``<!-- lmm_env:agent-table -->``: the registry's table, names linked to their pages;
  - ``<!-- lmm_env:agent-options -->``: the options every agent may take;
  - ``<!-- lmm_env:agents-for TASK -->``: the agents that play TASK;
  - ``<!-- lmm_env:guide-list -->``: links to the guide pages present;
  - ``<!-- lmm_env:spaces TASK -->``: TASK's spaces and signature, read from an env made with
    its default arguments;
  - ``<!-- lmm_env:include FILE -->``: a file of the repo (BENCHMARKS.md), whose links to files
    outside docs/ become plain code text (the site does not hold them).
"""
from __future__ import annotations

import fnmatch
import inspect
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SHADOW = ROOT / "build" / "docs_src"  # mkdocs.yml: mkdocstrings' python handler `paths`
# setup.py's package_dir: packages of lmm_env that live outside lmm_env/
MAPPED = {"envs": ROOT / "envs", "agents": ROOT / "agents"}

TASK_PAGES = {"LMMPiano-v0": "tasks/piano.md", "LMMDecipher-v0": "tasks/decipher.md",
              "LMMByEar-v0": "tasks/by-ear.md", "LMMImprovise-v0": "tasks/improvise.md"}
# the guide's reading order; pages not named here follow, alphabetically
GUIDE_ORDER = ("cli", "envs", "lmm-benchmark", "training", "language-models", "bring-your-own-lm", "pairs", "scaling",
               "video", "datasets")
_MARKER = re.compile(r"<!--\s*lmm_env:(?P<what>[\w-]+)\s*(?P<arg>[^>]*?)\s*-->")


# ---------------------------------------------------------------------------- config
def on_startup(command, dirty):
    _lay_out_package()


def on_config(config):
    config["nav"] = _expand_nav(config["nav"] or [], config["docs_dir"])
    return config


def _lay_out_package() -> None:
    """build/docs_src/lmm_env: lmm_env/'s entries plus envs/ and agents/, all symlinks."""
    pkg = SHADOW / "lmm_env"
    if SHADOW.exists():
        shutil.rmtree(SHADOW)
    pkg.mkdir(parents=True)
    for entry in sorted((ROOT / "lmm_env").iterdir()):
        if entry.name != "__pycache__" and entry.name not in MAPPED:
            os.symlink(entry, pkg / entry.name, target_is_directory=entry.is_dir())
    for name, path in MAPPED.items():
        os.symlink(path, pkg / name, target_is_directory=True)


def _agents():
    from lmm_env.agents.registry import AGENTS

    return AGENTS


def _expand_nav(nav, docs_dir):
    """The nav with each entry holding a ``*`` replaced by the pages it matches."""
    out = []
    for item in nav:
        if isinstance(item, str) and "*" in item:
            out.extend(_glob_pages(item, docs_dir))
        elif isinstance(item, dict):
            out.append({title: (_expand_nav(value, docs_dir) if isinstance(value, list) else value)
                        for title, value in item.items()})
        else:
            out.append(item)
    return out


def _glob_pages(pattern: str, docs_dir) -> list[str]:
    if pattern == "agents/*.md":
        return [f"agents/{name}.md" for name in _agents()]
    found = sorted(p.relative_to(docs_dir).as_posix() for p in Path(docs_dir).rglob("*.md"))
    found = [p for p in found if fnmatch.fnmatch(p, pattern)]
    if pattern.startswith("guide/"):
        rank = {name: i for i, name in enumerate(GUIDE_ORDER)}
        found.sort(key=lambda p: (rank.get(Path(p).stem, len(rank)), p))
    return found


# ---------------------------------------------------------------------------- agent pages
def on_files(files, config):
    from mkdocs.structure.files import File

    for name, spec in _agents().items():
        files.append(File.generated(config, f"agents/{name}.md", content=_agent_page(name, spec)))
    return files


def _task_link(task: str, here: str) -> str:
    return f"[{task}]({os.path.relpath(TASK_PAGES[task], os.path.dirname(here) or '.')})"


def _code_paths(text: str) -> str:
    """Scripts and files named in registry text, as code."""
    return re.sub(r"(?<![`\w])((?:scripts|bench|agents|lmm_env)/[\w./-]*\w)", r"`\1`", text)


def _agent_page(name: str, spec) -> str:
    from lmm_env.agents.registry import OPTION_HELP

    here = f"agents/{name}.md"
    tasks = ", ".join(_task_link(t, here) for t in spec.tasks)
    options = "; ".join(f"`{o}` ({OPTION_HELP[o]})" for o in spec.options) or "none"
    example = {"pairs": "pairs=16", "ear": None, "seed": "seed=0"}
    args = "".join(f", {example[o]}" for o in spec.options if example.get(o))
    flags = "".join({"pairs": " --pairs 16", "seed": " --seed 0"}.get(o, "") for o in spec.options)
    task = spec.tasks[0]
    lines = [
        f"# {name}",
        "",
        spec.description[:1].upper() + spec.description[1:] + ".",
        "",
        "| | |",
        "|---|---|",
        f"| kind | [{spec.kind}](../agents.md#kinds) |",
        f"| plays | {tasks} |",
        f"| options | {options} |",
        f"| learned from | {_code_paths(spec.learned_from or '-')} |",
        f"| retrain | {_code_paths(spec.retrain or '-')} |",
        "",
        "## Use it",
        "",
        "```python",
        "import gymnasium as gym",
        "import lmm_env",
        "from lmm_env.agents import load_agent",
        "",
        f'env = gym.make("{task}")',
        f'agent = load_agent("{name}", env{args})',
        "obs, info = env.reset(seed=0)",
        "action, state = agent.predict(obs, deterministic=True)",
        "```",
        "",
        "From the command line (held-out pieces of the test split, a metrics table):",
        "",
        "```bash",
        f"lmm-env eval --agent {name} --env {task}{flags}",
        "```",
        "",
        "Options not listed above are refused by name; see "
        "[`load_agent`][lmm_env.agents.registry.load_agent] and the [table of all agents](../agents.md).",
        "",
    ]
    return "\n".join(lines)


def _agent_table(here: str) -> str:
    from lmm_env.agents.registry import agent_table

    rows = agent_table(markdown=True).splitlines()
    base = os.path.dirname(here) or "."
    for i, row in enumerate(rows[2:], 2):
        name = row.split("|")[1].strip()
        link = os.path.relpath(f"agents/{name}.md", base)
        rows[i] = row.replace(f"| {name} |", f"| [{name}]({link}) |", 1)
    return "\n".join(rows)


def _agent_options() -> str:
    from lmm_env.agents.registry import OPTION_HELP

    return "\n".join(f"- `{name}`: {text}" for name, text in OPTION_HELP.items())


def _guide_list(here: str, docs_dir) -> str:
    """A list of links to the guide pages present (their first heading as the title), indented
    to sit under a list item."""
    lines = []
    for rel in _glob_pages("guide/*.md", docs_dir):
        text = (Path(docs_dir) / rel).read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), Path(rel).stem)
        lines.append(f"    - [{title}]({os.path.relpath(rel, os.path.dirname(here) or '.')})")
    return "\n".join(lines) or "    - (no guide pages)"


def _agents_for(task: str, here: str) -> str:
    from lmm_env.agents.registry import agents_for

    agents = _agents()
    base = os.path.dirname(here) or "."
    return "\n".join(f"- [{n}]({os.path.relpath(f'agents/{n}.md', base)}) ({agents[n].kind}): {agents[n].description}"
                     for n in agents_for(task))


# ---------------------------------------------------------------------------- task spaces
def _spaces(task: str) -> str:
    """Gymnasium's table of a task: its spaces as an env made with default arguments has them.

    Only what costs time and does not change the spaces is replaced: a one-note score (no
    corpus), the key_match reward (no LMs) and a one-second tone as the by-ear target."""
    import gymnasium as gym
    import numpy as np

    import lmm_env  # noqa: F401  (registers the tasks)
    from lmm_env.score import Score

    cheap = {"reward": "key_match"}
    if task == "LMMByEar-v0":
        cheap["target"] = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    elif task == "LMMImprovise-v0":
        cheap["prompt"] = Score.from_notes([(60, 0.0, 1.0, 80)])
    else:
        cheap["score"] = Score.from_notes([(60, 0.0, 1.0, 80)])
    spec = gym.spec(task)
    module, cls = spec.entry_point.split(":")
    env = gym.make(task, **cheap)
    try:
        obs = env.observation_space
        rows = [("Action Space", f"`{env.action_space}`"),
                ("Observation Space", "`Dict` of " + ", ".join(f"`\"{k}\"`: `{v}`" for k, v in obs.spaces.items())),
                ("Import", f'`gym.make("{task}")`'),
                ("Batched", f'`gym.make_vec("{task}", num_envs=N)`'),
                ("Class", f"[`{module}.{cls}`][{module}.{cls}]")]
        sig = inspect.signature(type(env.unwrapped))
        sig = sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()])
        signature = f"{cls}{sig}"
    finally:
        env.close()
    table = "\n".join(["| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    return (f"{table}\n\n(Spaces with the default arguments: 88 keys, lookahead 10, 64 mel bands.)\n\n"
            f"```python\n{_wrap(signature)}\n```")


def _wrap(signature: str, width: int = 88) -> str:
    """A signature broken after commas into lines of at most ``width`` characters."""
    head, _, rest = signature.partition("(")
    parts = [p.strip() for p in rest[:-1].split(", ")]
    lines, line = [], f"{head}("
    for i, part in enumerate(parts):
        piece = part + ("," if i < len(parts) - 1 else ")")
        if len(line) + len(piece) + 1 > width and line.strip() != f"{head}(":
            lines.append(line.rstrip())
            line = " " * (len(head) + 1)
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------- includes
_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
_REF_DEF = re.compile(r"^(?P<head> {0,3}\[[^\]]+\]:\s*)(?P<target>\S+)(?P<rest>.*)$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_HTML_IMG = re.compile(r"<img\b[^>]*?\bsrc=\"(?P<target>[^\"]+)\"[^>]*>", re.IGNORECASE)
_HTML_HREF = re.compile(r"(?P<head><a\b[^>]*?)\s+href=\"(?P<target>[^\"]+)\"", re.IGNORECASE)


def _include(rel: str, here: str) -> str:
    """The repo file ``rel`` (from the repo root), its links re-pointed for docs page ``here``."""
    src = ROOT / rel
    return rewrite_links(src.read_text(encoding="utf-8"), src.parent, (DOCS / here).parent, DOCS)


def rewrite_links(text: str, src_dir: Path, page_dir: Path, docs_dir: Path) -> str:
    """``text`` (a file of ``src_dir``) made to read from ``page_dir``: a link into ``docs_dir``
    is rewritten relative to the page; a link to any other file (which the site does not hold)
    becomes its text followed by the path as code, an image its alt text and path; web links,
    mail links and anchors are kept (raw HTML ``<img src>`` and ``<a href>`` alike). Fenced
    code is left alone."""
    docs_dir = Path(docs_dir).resolve()

    def target(t: str):
        if re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, re.I):
            return t
        path, _, anchor = t.partition("#")
        abs_path = (Path(src_dir) / path).resolve()
        if not abs_path.is_relative_to(docs_dir) or not abs_path.exists():
            return None
        new = os.path.relpath(abs_path, Path(page_dir).resolve()).replace(os.sep, "/")
        return new + (f"#{anchor}" if anchor else "")

    def link(m):
        new = target(m["target"])
        if new is not None:
            return f"{m['bang']}[{m['text']}]({new}{m['title'] or ''})"
        path = m["target"].partition("#")[0] or m["target"]
        if m["bang"]:
            return f"*({m['text'] or 'image'}: `{path}` in the repository)*"
        return f"{m['text']} (`{path}`)" if m["text"].strip("`") != path else f"`{path}`"

    def ref_def(m):
        new = target(m["target"])
        return f"{m['head']}{new if new is not None else '#'}{m['rest']}"

    def img(m):
        new = target(m["target"])
        if new is not None:
            return m.group(0).replace(f'"{m["target"]}"', f'"{new}"', 1)
        return f"*(image: `{m['target']}` in the repository)*"

    def href(m):
        new = target(m["target"])
        return f'{m["head"]} href="{new}"' if new is not None else m["head"]

    def prose(chunk: str) -> str:
        chunk = _LINK.sub(link, chunk)
        chunk = _REF_DEF.sub(ref_def, chunk)
        return _HTML_HREF.sub(href, _HTML_IMG.sub(img, chunk))

    parts, last = [], 0
    for fence in _FENCE.finditer(text):
        parts.append(prose(text[last:fence.start()]))
        parts.append(fence.group(0))
        last = fence.end()
    parts.append(prose(text[last:]))
    return "".join(parts)


# ---------------------------------------------------------------------------- markers
def on_page_markdown(markdown, page, config, files):
    here = page.file.src_uri

    def fill(m):
        what, arg = m["what"], m["arg"]
        if what == "agent-table":
            return _agent_table(here)
        if what == "guide-list":
            return _guide_list(here, config["docs_dir"])
        if what == "agent-options":
            return _agent_options()
        if what == "agents-for":
            return _agents_for(arg, here)
        if what == "spaces":
            return _spaces(arg)
        if what == "include":
            return _include(arg, here)
        raise ValueError(f"{here}: unknown marker lmm_env:{what}")

    return _MARKER.sub(fill, markdown)
