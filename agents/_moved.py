"""Old module paths of lmm_env.agents (before agents/ was laid out by role) resolve to the new ones.

``import lmm_env.agents.zoo`` or ``from lmm_env.agents.train import read_checkpoint`` give the
very module that now lives at ``lmm_env.agents.registry`` / ``lmm_env.agents.training.sb3``
(one module object under two names, so patching either patches both). New code should use
the new paths; the old ones stay so that users' scripts keep working.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

# old submodule name -> new module path (relative to lmm_env.agents)
MOVED = {
    "baselines": None,  # now a package of the same name: its old names are re-exported there
    "decipher": "baselines.decipher",
    "by_ear": "baselines.by_ear",
    "gradient": "baselines.gradient",
    "improvise": "baselines.improvise",
    "pairs_only": "baselines.pairs_only",
    "differentiable": "learned.differentiable",
    "decipher_learn": "learned.decipher",
    "policies": "learned.policies",
    "train": "training.sb3",
    "sac": "training.sac",
    "rllib": "training.rllib",
    "diff_train": "training.diff_train",
    "train_improvise": "training.improvise",
    "evaluate": "benchmark.evaluate",
    "zoo": "registry",
}
_PREFIX = "lmm_env.agents."


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__  # importlib sets __spec__ to the alias's; exec_module restores it
        return module

    def exec_module(self, module):  # the target module is already executed
        module.__spec__ = self._spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(_PREFIX):
            return None
        new = MOVED.get(fullname[len(_PREFIX):])
        if new is None:
            return None
        target_name = _PREFIX + new
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(target_name))
        return spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent).

    ``train`` and ``evaluate`` are also functions of ``lmm_env.agents``: their old module
    names are entered in ``sys.modules`` now, because importing a submodule the first time
    would set the package's attribute to the module and hide the function."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
    for old in ("train", "evaluate"):
        sys.modules.setdefault(_PREFIX + old, importlib.import_module(_PREFIX + MOVED[old]))
