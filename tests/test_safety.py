"""Safe to share (issue 21): files never run code or decide memory, agents play only their tasks,
the torch world says what it supports, the hidden layout is out of an attribute walk's reach,
and bad values are named when they are given."""
from __future__ import annotations

import gc
import json
import sys
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lmm_env  # noqa: F401
from lmm_env.lm.checkpoint import WEIGHTS_DIR, CheckpointError, load_checkpoint

AGENT_WEIGHTS = Path(__import__("lmm_env.agents", fromlist=["x"]).__file__).resolve().parent / "weights"


def _rewrite(src, dst, config_edit=None, tensor_edit=None) -> Path:
    """A copy of the safetensors file ``src`` at ``dst`` with its JSON config and/or tensors edited."""
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if config_edit:
        config = json.loads(meta["config"])
        config_edit(config)
        meta["config"] = json.dumps(config)
    if tensor_edit:
        tensor_edit(tensors)
    save_file(tensors, str(dst), metadata=meta)
    return Path(dst)


def _ppo_closed_loop():
    return AGENT_WEIGHTS / "ppo-closed-loop.safetensors"


# --------------------------------------------------------------------------- 1. no code from a file


def test_a_checkpoint_naming_a_module_env_id_is_refused_without_importing_it(tmp_path, monkeypatch):
    evil = tmp_path / "lmm_evil_mod.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the module beside the file is importable
    monkeypatch.chdir(tmp_path)
    bad = _rewrite(_ppo_closed_loop(), tmp_path / "shared.safetensors",
                   config_edit=lambda c: c.update(env_id="lmm_evil_mod:LMMPiano-v0"))
    from lmm_env.agents import load_agent, load_trained
    from lmm_env.agents.training.sb3 import export_policy, read_checkpoint

    for load in (load_agent, load_trained, read_checkpoint, lambda p: export_policy(p, tmp_path / "x.safetensors")):
        with pytest.raises(ValueError, match=r"env_id='lmm_evil_mod:LMMPiano-v0'.*LMMPiano-v0.*LMMImprovise-v0"):
            load(bad)
    from lmm_env.agents.benchmark import runner as benchmark

    with pytest.raises(benchmark.BenchmarkArgumentError, match="lmm_evil_mod"):
        benchmark.resolve([str(bad)])
    assert "lmm_evil_mod" not in sys.modules and not marker.exists()


def test_an_lm_checkpoint_naming_an_unknown_class_is_refused_without_importing_it(tmp_path):
    src = WEIGHTS_DIR / "score_lm.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata(), **{"class": "lmm_env_evil_module:ScoreLM"})
    save_file(load_file(str(src)), str(tmp_path / "lm.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="names class 'lmm_env_evil_module:ScoreLM'"):
        load_checkpoint(tmp_path / "lm.safetensors")
    assert "lmm_env_evil_module" not in sys.modules


# --------------------------------------------------------------------------- 4. sizes from a file are bounded


def _record_real_builds(monkeypatch, cls, method):
    """Record the default torch device every time ``cls.method`` runs (meta = a shape-only build)."""
    devices = []
    original = getattr(cls, method)

    def spy(self, *args, **kwargs):
        devices.append(torch.get_default_device().type)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, spy)
    return devices


def test_an_agent_checkpoint_asking_for_a_huge_layer_is_refused_before_allocating(tmp_path, monkeypatch):
    from lmm_env.agents import load_agent
    from lmm_env.agents.learned.policies import KeyConvPolicy

    def widen(c):
        c["hyperparams"].setdefault("policy_kwargs", {})["actor_channels"] = [4_000_000, 32]

    bad = _rewrite(_ppo_closed_loop(), tmp_path / "wide.safetensors", config_edit=widen)
    builds = _record_real_builds(monkeypatch, KeyConvPolicy, "_build")
    with pytest.raises(ValueError, match=r"wide\.safetensors.*\(4000000,"):
        load_agent(bad)
    assert builds and set(builds) == {"meta"}  # only the shape-only skeleton was ever built
    builds.clear()
    assert load_agent(_ppo_closed_loop()) is not None and "cpu" in builds  # the untouched file builds for real


def test_an_ear_file_asking_for_huge_layers_is_refused_before_allocating(tmp_path, monkeypatch):
    from lmm_env.lm.ear import LearnedEar

    src = WEIGHTS_DIR / "ear.safetensors"
    huge = _rewrite(src, tmp_path / "huge.safetensors", config_edit=lambda c: c.update(hidden=200000, channels=4096))
    with pytest.raises(CheckpointError, match=r"huge\.safetensors.*channels=4096"):
        load_checkpoint(huge)
    wide = _rewrite(src, tmp_path / "wide.safetensors", config_edit=lambda c: c.update(hidden=4000, channels=1000))
    builds = _record_real_builds(monkeypatch, LearnedEar, "refresh")
    with pytest.raises(CheckpointError, match=r"wide\.safetensors.*conv.*\(1000,\)"):
        load_checkpoint(wide)
    assert set(builds) == {"meta"}
    for edit, msg in ((lambda c: c.update(history_blocks=10**9), "history_blocks"),
                      (lambda c: c.update(block_size=-5), "block_size")):
        with pytest.raises(CheckpointError, match=msg):
            load_checkpoint(_rewrite(src, tmp_path / "e.safetensors", config_edit=edit))


def test_a_diff_policy_asking_for_a_huge_network_is_refused_before_allocating(tmp_path, monkeypatch):
    from lmm_env.agents.learned import differentiable
    from lmm_env.agents.learned.differentiable import DiffPolicy, shipped_path

    bad = _rewrite(shipped_path("g"), tmp_path / "g.safetensors", config_edit=lambda c: c.update(channels=[1000, 32]))
    builds = _record_real_builds(monkeypatch, differentiable.KeyNet, "__init__")
    with pytest.raises(ValueError, match=r"g\.safetensors.*\(1000,"):
        DiffPolicy.load(bad)
    assert set(builds) == {"meta"}
    with pytest.raises(ValueError, match="channels"):
        DiffPolicy.load(_rewrite(shipped_path("g"), tmp_path / "g2.safetensors",
                                 config_edit=lambda c: c.update(channels=[32] * 100)))


def test_a_training_checkpoint_asking_for_huge_buffers_is_refused(tmp_path):
    from lmm_env.agents import load_trained

    for edit, msg in ((lambda c: c.update(n_envs=10**6), "n_envs=1000000"),
                      (lambda c: c["hyperparams"].update(n_steps=10**9), "n_steps"),
                      (lambda c: c["hyperparams"].update(policy_kwargs={"net_arch": [64] * 1000}), "1000 layers")):
        with pytest.raises(ValueError, match=msg):
            load_trained(_rewrite(_ppo_closed_loop(), tmp_path / "b.safetensors", config_edit=edit))


# --------------------------------------------------------------------------- 11. files are named in errors


def test_files_with_extra_tensors_name_them(tmp_path):
    from lmm_env.agents import load_agent
    from lmm_env.agents.learned.differentiable import DiffPolicy, shipped_path

    def add(t):
        t["policy.stowaway"] = torch.zeros(3)

    with pytest.raises(ValueError, match=r"extra\.safetensors.*'stowaway'"):
        load_agent(_rewrite(_ppo_closed_loop(), tmp_path / "extra.safetensors", tensor_edit=add))
    with pytest.raises(ValueError, match=r"tensors \['stowaway'\]"):
        load_agent(_rewrite(_ppo_closed_loop(), tmp_path / "extra2.safetensors",
                            tensor_edit=lambda t: t.update(stowaway=torch.zeros(3))))
    with pytest.raises(CheckpointError, match=r"lm\.safetensors.*'stowaway'"):
        load_checkpoint(_rewrite(WEIGHTS_DIR / "score_lm.safetensors", tmp_path / "lm.safetensors",
                                 tensor_edit=lambda t: t.update(stowaway=torch.zeros(3))))
    with pytest.raises(ValueError, match=r"g\.safetensors.*'stowaway'"):
        DiffPolicy.load(_rewrite(shipped_path("g"), tmp_path / "g.safetensors",
                                 tensor_edit=lambda t: t.update(stowaway=torch.zeros(3))))


def test_an_ear_file_with_nan_weights_is_refused_at_load_naming_the_file(tmp_path):
    def poison(t):
        k = next(k for k in t if t[k].is_floating_point())
        t[k] = t[k].clone()
        t[k].view(-1)[0] = float("nan")

    bad = _rewrite(WEIGHTS_DIR / "ear.safetensors", tmp_path / "nan_ear.safetensors", tensor_edit=poison)
    with pytest.raises(CheckpointError, match=r"nan_ear\.safetensors.*non-finite"):
        gym.make("LMMPiano-v0", score="exercises-scale", ear=str(bad))


def test_an_ear_that_is_a_score_lm_file_is_named_as_such():
    with pytest.raises(TypeError, match=r"score_lm\.safetensors' holds a ScoreLM, not an ear") as err:
        gym.make("LMMPiano-v0", score="exercises-scale", ear=str(WEIGHTS_DIR / "score_lm.safetensors"))
    assert "Linear(" not in str(err.value)  # no module repr
    with pytest.raises(TypeError, match=r"3 \(type int\) is not an ear"):
        gym.make("LMMPiano-v0", score="exercises-scale", ear=3)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seeds_are_named(seed):
    env = gym.make("LMMPiano-v0", score="exercises-scale", max_seconds=2)
    with pytest.raises(ValueError, match=f"seed={seed!r} is not allowed"):
        env.reset(seed=seed)
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, score="exercises-scale", max_seconds=2)
    with pytest.raises(ValueError, match="seed"):
        venv.reset(seed=seed)
    with pytest.raises(ValueError, match=r"seed\[1\]=-3"):
        venv.reset(seed=[0, -3])


def test_the_rllib_entry_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "lmm_env.agents.training.rllib", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'lmm_env\[rllib\]'"):
        __import__("lmm_env.agents.training.rllib")


def test_write_video_refuses_audio_it_cannot_encode(tmp_path):
    from lmm_env.envs.video import write_video

    frames = [np.zeros((8, 8, 3), np.uint8)] * 4
    with pytest.raises(ValueError, match="non-finite"):
        write_video(frames, np.full(3200, np.nan, np.float32), 16000, 20, tmp_path / "v.mp4")
    with pytest.raises(ValueError, match="sample_rate"):
        write_video(frames, np.zeros(3200, np.float32), 0, 20, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


# --------------------------------------------------------------------------- 8. agents play their own tasks


@pytest.mark.parametrize("agent, task, plays", [("ppo-closed-loop", "LMMByEar-v0", "LMMPiano-v0"),
                                                ("ppo-improvise", "LMMPiano-v0", "LMMImprovise-v0"),
                                                ("score-reader", "LMMByEar-v0", "LMMPiano-v0")])
def test_load_agent_refuses_an_env_of_another_task(agent, task, plays):
    from lmm_env.agents import load_agent

    env = gym.make(task, score="exercises-scale", max_seconds=2)
    with pytest.raises(ValueError, match=f"'{agent}' does not play {task}; it plays .*{plays}"):
        load_agent(agent, env)


def test_load_agent_refuses_a_checkpoint_trained_on_other_observations(tmp_path):
    from lmm_env.agents import load_agent

    env = gym.make("LMMPiano-v0", score="exercises-scale", max_seconds=2, lookahead=4)
    with pytest.raises(ValueError, match="trained on observations"):
        load_agent(_ppo_closed_loop(), env)
    assert load_agent(_ppo_closed_loop(), gym.make("LMMPiano-v0", score="exercises-scale")) is not None


# --------------------------------------------------------------------------- 9. the torch world's refusals


@pytest.mark.parametrize("task", ["LMMDecipher-v0", "LMMByEar-v0", "LMMImprovise-v0"])
def test_other_tasks_refuse_the_torch_backend_by_name(task):
    with pytest.raises(ValueError, match=f"backend='torch' is not available for {task}.*LMMPiano-v0 only"):
        gym.make_vec(task, num_envs=2, backend="torch")
    with pytest.raises(ValueError, match=f"device='cuda' is not available for {task}"):
        gym.make_vec(task, num_envs=2, device="cuda")


def test_the_torch_world_names_the_devices_and_synths_it_supports(monkeypatch):
    with pytest.raises(ValueError, match=r"device='mps' is not supported by the torch world.*'cpu'"):
        gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", device="mps")
    with pytest.raises(ValueError, match="device='banana' is not a torch device"):
        gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", device="banana")
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # refused before the SoundFont is even looked for
    with pytest.raises(ValueError, match=r"synth='soundfont' has no torch twin.*synth='piano'"):
        gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", synth="soundfont")


# --------------------------------------------------------------------------- 10. the hidden layout


def _state_graph(root) -> list:
    """Every object reachable from ``root`` by references (attributes, containers, closures, bound
    methods): an agent's attribute walk. Modules, classes and module globals are the library, not
    the env's state, and are not entered."""
    module_dicts = {id(vars(m)) for m in list(sys.modules.values()) if m is not None and hasattr(m, "__dict__")}
    seen, stack, out = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, types.CodeType)) or id(obj) in module_dicts:
            continue
        seen.add(id(obj))
        out.append(obj)
        if not isinstance(obj, (str, bytes, int, float, complex, bool)):
            stack.extend(gc.get_referents(obj))
    return out


def _reveals(obj, perm: np.ndarray) -> bool:
    """Whether ``obj`` holds the layout: a non-identity permutation of a run of n integers (the pitches,
    columns, action indices or their inverse), alone or inside an 88- or 128-wide row."""
    n, lo = len(perm), int(perm.min())
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, (list, tuple)) and len(obj) in (n, 88, 128) and all(isinstance(x, (int, np.integer)) for x in obj):
        obj = np.asarray(obj)
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "iu" or obj.ndim == 0:
        return False
    for row in obj.reshape(-1, obj.shape[-1])[:256]:
        windows = [row] if len(row) == n else []
        windows += [row[lo: lo + n]] if len(row) == 128 else []
        windows += [row[lo - 21: lo - 21 + n]] if len(row) == 88 else []
        for w in windows:
            s = np.sort(w)
            if np.array_equal(s, s[0] + np.arange(n)) and not np.array_equal(w, s):
                return True
    return False


@pytest.mark.parametrize("make", [
    lambda: gym.make("LMMDecipher-v0", keys=(48, 84), score="exercises-scale", max_seconds=2),
    lambda: gym.make_vec("LMMDecipher-v0", num_envs=3, keys=(48, 84), score="exercises-scale", max_seconds=2,
                         relayout="episode"),
], ids=["single", "vector-relayout"])
def test_no_attribute_walk_from_a_sealed_env_reaches_its_layout(make):
    env = make()
    kb = env.unwrapped.keyboard if hasattr(env, "unwrapped") and hasattr(env.unwrapped, "keyboard") \
        else env.sim.keyboard
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    layouts = np.atleast_2d(kb.reveal())
    assert all(not np.array_equal(p, np.sort(p)) for p in layouts)  # really shuffled
    kb._reveal_allowed = False  # as the benchmark does for non-oracles
    graph = _state_graph(env)
    assert len(graph) > 500  # the walk does reach the env's state (sim, keyboard, synth, rewards, ...)
    for perm in layouts:
        leaks = [type(o).__name__ + str(getattr(o, "shape", "")) for o in graph if _reveals(o, perm)]
        assert not leaks, f"the layout is reachable from the env: {leaks}"
    with pytest.raises(lmm_env.keyboard.HiddenLayoutError):
        kb.pitches_down(0)
    # the world still plays the hidden layout, and a pickled copy keeps it
    import pickle

    kb._reveal_allowed = True
    twin = pickle.loads(pickle.dumps(kb))
    assert np.array_equal(twin.reveal(), kb.reveal())


def test_a_policy_loads_without_building_what_its_env_arguments_would_load(tmp_path, monkeypatch):
    """The spaces come from the shape arguments: a checkpoint trained with pairs=K, a SoundFont or a
    recording loads without fitting an ear, opening the SoundFont or reading the recording."""
    from lmm_env.agents import load_agent
    from lmm_env.lm import ear as ear_mod

    def trained_elsewhere(c):
        c["env_kwargs"].update(pairs=64, synth="/nowhere/piano.sf2", score="/nowhere/tunes.mid")

    path = _rewrite(_ppo_closed_loop(), tmp_path / "p.safetensors", config_edit=trained_elsewhere)
    monkeypatch.setattr(ear_mod, "ear_for", lambda *a, **k: pytest.fail("an ear was fitted to learn the spaces"))
    policy = load_agent(path)
    assert policy.env_id == "LMMPiano-v0" and policy.observation_space["score"].shape == (3, 11, 88)
