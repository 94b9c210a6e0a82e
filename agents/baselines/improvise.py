"""Baselines of LMMImprovise-v0: repeat the prompt, and sample the score LM (LM^V)."""
from __future__ import annotations

import numpy as np

from lmm_env._checks import check_int, check_real, check_seed, short_repr

_SILENT = -1.0


def _keys_of(env, who: str):
    if env is None:
        raise TypeError(f"{who} needs the env it will play, got None")
    sim = getattr(getattr(env, "unwrapped", None), "sim", None)
    if sim is None or not hasattr(sim, "prompt_steps"):
        raise TypeError(f"{short_repr(env)} is not LMMImprovise-v0; {who} plays LMMImprovise-v0")
    return sim


class RepeatPromptAgent:
    """Records the prompt's frames from the score observation while it lasts, then plays them in a loop."""

    oracle = False

    def __init__(self, env):
        self.sim = _keys_of(env, "RepeatPromptAgent")
        self.n_actions = self.sim.keyboard.n_actions
        self.reset()

    def reset(self) -> None:
        self._rows: list[np.ndarray] = []
        self._t = 0

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        if episode_start is not None and bool(np.any(episode_start)) and self._t:
            self.reset()
        score = np.asarray(observation["score"])
        action = np.full(self.n_actions, _SILENT, np.float32)
        if observation["prompt"][0] > 0.5:
            row = np.where(score[0, 0] > 0.5, np.maximum((np.rint(score[2, 0] * 127) - 1) / 126, 1e-4), _SILENT)
            self._rows.append(row.astype(np.float32))
            action[: len(row)] = row
        elif self._rows:
            n = len(self._rows)
            row = self._rows[(self._t - n) % n]
            prev = self._rows[(self._t - n - 1) % n]
            action[: len(row)] = row
            action[: len(row)][(row > 0) & (prev > 0) & ((self._t - n) % n == 0)] = _SILENT  # re-strike at the loop
        self._t += 1
        return action, state


class ScoreLMSamplerAgent:
    """Samples each frame from the score LM (LM^V) given the frames so far, and plays it (known keyboard).

    The prompt's frames (from the score observation) condition the LM; afterwards each
    frame's held/onset bits are drawn from the LM's Bernoulli logits divided by
    ``temperature``; a key that should be re-struck is released for one step first."""

    oracle = False

    def __init__(self, env, seed: int = 0, temperature: float = 1.0, velocity: int = 80):
        from lmm_env.lm import load_pretrained

        self.sim = _keys_of(env, "ScoreLMSamplerAgent")
        self.temperature = check_real("temperature", temperature, 0.0, 100.0, lo_open=True)
        self.velocity = check_int("velocity", velocity, 1, 127)
        self.rng = np.random.default_rng(check_seed(seed))
        self.lm = load_pretrained("score")
        self.lo, self.hi = self.sim.keyboard.lo, self.sim.keyboard.hi
        self.n_actions = self.sim.keyboard.n_actions
        self.reset()

    def reset(self) -> None:
        self.stream = self.lm.stream()
        self._down = np.zeros(88, bool)
        self._t = 0

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        if episode_start is not None and bool(np.any(episode_start)) and self._t:
            self.reset()
        self._t += 1
        cols = slice(self.lo - 21, self.hi - 21 + 1)
        if observation["prompt"][0] > 0.5:
            held = np.zeros(88, bool)
            onset = np.zeros(88, bool)
            held[cols] = np.asarray(observation["score"])[0, 0] > 0.5
            onset[cols] = np.asarray(observation["score"])[1, 0] > 0.5
            self.stream.push(held, onset)
            self._down = held
            return np.full(self.n_actions, _SILENT, np.float32), state  # the world plays the prompt
        z = self.stream.logits / self.temperature  # (2, 88)
        with np.errstate(over="ignore"):  # exp(-z) -> inf for very negative logits: p = 0, as it should be
            p = 1.0 / (1.0 + np.exp(-z))
        onset = self.rng.random(88) < p[1]
        held = (self.rng.random(88) < p[0]) | onset
        inside = np.zeros(88, bool)
        inside[cols] = True
        held &= inside
        onset &= held
        self.stream.push(held, onset | (held & ~self._down))
        action = np.full(self.n_actions, _SILENT, np.float32)
        play = held & ~(onset & self._down)  # a re-strike needs a step up first
        action[: self.hi - self.lo + 1][play[cols]] = (self.velocity - 1) / 126.0
        self._down = play
        return action, state


class PolicySamplerAgent:
    """Plays a trained SB3 actor-critic policy on LMMImprovise-v0 by *sampling* its action distribution.

    A Gaussian policy's mean alone (``deterministic=True``) is a fixed function of what it
    observes; in free play that is only the key state, so the mean plays silence or a loop.
    An improviser's policy is its distribution: this agent draws each action from it with
    its own generator (``seed``), so a run is reproducible and ``deterministic`` (which the
    benchmark passes) does not change it. ``policy`` is an SB3 policy or model (``.policy``).
    """

    oracle = False

    def __init__(self, policy, seed: int = 0):
        self.policy = getattr(policy, "policy", policy)
        if not all(hasattr(self.policy, a) for a in ("obs_to_tensor", "get_distribution", "action_space")):
            raise TypeError(f"policy={short_repr(policy)} is not allowed; pass an SB3 actor-critic policy or a model "
                            "with one (.policy), e.g. lmm_env.agents.load_agent('ppo-improvise')")
        self.observation_space = self.policy.observation_space
        self.action_space = self.policy.action_space
        if check_seed(seed) is None:  # None would make a run irreproducible, which this agent promises
            raise ValueError("seed=None is not allowed; use an int >= 0")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self) -> None:  # one generator for the agent's life: episodes draw different noise
        pass

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        import torch

        obs, vectorized = self.policy.obs_to_tensor(observation)
        with torch.no_grad():
            dist = self.policy.get_distribution(obs).distribution
            mean, std = dist.mean.cpu().numpy(), dist.stddev.cpu().numpy()
        action = mean + std * self.rng.standard_normal(mean.shape)
        action = np.clip(action, self.action_space.low, self.action_space.high).astype(np.float32)
        return (action if vectorized else action[0]), state
