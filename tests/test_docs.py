"""The documentation site's sources (no mkdocs build here: `make test` builds the site after pytest).

Each task env's class docstring is its task page (Gymnasium's environment-page form), so it
must keep every section; docs/hooks.py generates the agent pages, the nav's guide list and the
included BENCHMARKS.md at build time.
"""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SECTIONS = ("Description", "Action Space", "Observation Space", "Rewards", "Starting State", "Episode End",
            "Arguments", "Version History")
TASK_CLASSES = {"LMMPiano-v0": ("envs/piano.py", "LMMPianoEnv"),
                "LMMDecipher-v0": ("envs/decipher.py", "LMMDecipherEnv"),
                "LMMByEar-v0": ("envs/by_ear.py", "LMMByEarEnv"),
                "LMMImprovise-v0": ("envs/improvise.py", "LMMImproviseEnv")}


@pytest.fixture(scope="module")
def hooks():
    spec = importlib.util.spec_from_file_location("lmm_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def class_docstring(path: str, name: str) -> str:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    return ast.get_docstring(node) or ""


def test_every_task_has_a_class_and_a_page(hooks):
    from lmm_env import TASK_IDS

    assert set(TASK_CLASSES) == set(TASK_IDS) == set(hooks.TASK_PAGES)
    for task, (path, name) in TASK_CLASSES.items():
        page = (DOCS / hooks.TASK_PAGES[task]).read_text(encoding="utf-8")
        module = "lmm_env.envs." + Path(path).stem
        assert f"::: {module}.{name}\n" in page, f"{hooks.TASK_PAGES[task]} does not render {module}.{name}"
        assert f"<!-- lmm_env:spaces {task} -->" in page and f"<!-- lmm_env:agents-for {task} -->" in page


@pytest.mark.parametrize("task", sorted(TASK_CLASSES))
def test_task_docstring_has_gymnasium_sections_in_order(task):
    path, name = TASK_CLASSES[task]
    doc = class_docstring(path, name)
    headings = re.findall(r"^## (.+?)\s*$", doc, re.MULTILINE)
    missing = [s for s in SECTIONS if s not in headings]
    assert not missing, f"{name}'s docstring lacks the section(s) {missing} (its task page is built from it)"
    assert [h for h in headings if h in SECTIONS] == list(SECTIONS), f"{name}: sections out of order: {headings}"
    for section in SECTIONS:  # each section says something
        body = doc.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        assert body.strip(), f"{name}'s {section} section is empty"
    assert "* v0" in doc.split("## Version History", 1)[1]


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for folder in ("tasks", "reference"):
        for page in sorted((DOCS / folder).glob("*.md")):
            assert f"{folder}/{page.name}" in nav, f"docs/{folder}/{page.name} is not in mkdocs.yml's nav"
    assert "guide/*.md" in nav and "agents/*.md" in nav


def test_nav_expands_guide_pages_and_agents(hooks, tmp_path):
    from lmm_env.agents.registry import AGENTS

    (tmp_path / "guide").mkdir()
    for name in ("zeta", "envs", "cli"):
        (tmp_path / "guide" / f"{name}.md").write_text(f"# {name}\n")
    nav = hooks._expand_nav([{"Home": "index.md"}, {"Guide": ["guide/*.md"]}, {"Agents": ["agents.md", "agents/*.md"]}],
                            tmp_path)
    assert nav[0] == {"Home": "index.md"}
    assert nav[1] == {"Guide": ["guide/cli.md", "guide/envs.md", "guide/zeta.md"]}  # reading order, then the rest
    assert nav[2] == {"Agents": ["agents.md"] + [f"agents/{name}.md" for name in AGENTS]}


def test_agent_pages_say_how_to_run_each_agent(hooks):
    from lmm_env.agents.registry import AGENTS

    for name, spec in AGENTS.items():
        page = hooks._agent_page(name, spec)
        assert page.startswith(f"# {name}\n")
        assert f'load_agent("{name}", env' in page and f"lmm-env eval --agent {name} --env {spec.tasks[0]}" in page
        for task in spec.tasks:
            assert f"[{task}](../{hooks.TASK_PAGES[task]})" in page
    table = hooks._agent_table("agents.md")
    assert all(f"| [{name}](agents/{name}.md) |" in table for name in AGENTS)


def test_included_file_links_resolve_or_become_text(hooks, tmp_path):
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "envs.md").write_text("# Envs\n")
    (docs / "headline.png").write_bytes(b"")
    text = ("See [the envs](docs/guide/envs.md#rewards), [bench](bench/README.md), `x` [](#history), "
            "[web](https://example.org/a.md), ![curve](docs/headline.png) and ![gone](out/x.png).\n"
            "```\n[kept](bench/README.md)\n```\n"
            '<img src="docs/headline.png" width="50%"> <img src="out/y.png"> <a href="LICENSE">license</a>\n')
    out = hooks.rewrite_links(text, tmp_path, docs, docs)
    assert "[the envs](guide/envs.md#rewards)" in out
    assert "bench (`bench/README.md`)" in out
    assert "[](#history)" in out and "[web](https://example.org/a.md)" in out
    assert "![curve](headline.png)" in out
    assert "out/x.png" in out and "![gone]" not in out
    assert "[kept](bench/README.md)" in out  # fenced code is left alone
    assert '<img src="headline.png" width="50%">' in out and "(image: `out/y.png` in the repository)" in out
    assert "<a>license</a>" in out


def test_agents_exports_are_all_pointed_to():
    """docs/reference/agents.md says where each name of ``lmm_env.agents.__all__`` is documented."""
    tree = ast.parse((ROOT / "agents" / "__init__.py").read_text(encoding="utf-8"))
    exported = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "__all__" for t in n.targets))
    page = (DOCS / "reference" / "agents.md").read_text(encoding="utf-8")
    missing = [name for name in exported if f"`{name}`" not in page]
    assert not missing, f"docs/reference/agents.md does not say where {missing} are documented"
