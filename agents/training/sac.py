"""SAC with per-key categorical actions ("KeyLevelPolicy"): soft actor-critic that can learn
LMMPiano-v0.

    from lmm_env.agents.training.sac import SAC                   # SB3's SAC, plus the policy below
    model = SAC("KeyLevelPolicy", make_sb3_vec_env(8, max_seconds=12), ent_coef=0.1)
    # or lmm_env.agents.train(algo="sac", policy="KeyLevelPolicy", ...) / preset("sac")

Why not SB3's Gaussian SAC: a key sounds iff its action is > 0, so the reward is a step
function of each action. SAC's actor follows the critic's gradient with respect to the
(reparameterized) action, and on a step function that gradient only exists where the critic
happens to smooth it; with 88 keys it never found the notes (``KeyConvSACPolicy``, the
Gaussian variant, stays available; its grid is in BENCHMARKS.md). PPO and A2C do not need a
gradient of the reward and learn with a Gaussian.

Here each key's action is one of ``n_velocities + 1`` levels: 0 = key up, level ``j`` = key
down (struck with MIDI velocity ``1 + round(126 * j / n_velocities)``). The policy still acts
in the env's own ``Box`` action space (level ``j`` is the value ``j / n_velocities``, up is
-1), so the env, the replay buffer, evaluation and checkpoints are unchanged. Training is
discrete SAC (Christodoulou 2019, "Soft Actor-Critic for Discrete Action Settings") with a
factored critic, so every expectation over actions is exact instead of sampled, and with
the entropy bonus taken relative to a prior policy ``pi0`` (each key down with probability
``init_press``), i.e. the KL-regularized form of maximum-entropy RL:

* **Critic**: ``Q(s, a) = b(s) + sum_k q_k(s)[a_k]``: a pitch-equivariant conv stack over
  keys gives every key a value for each of its levels (one shared 1x1 head, zero at the
  start), and ``b(s)`` (key-pooled features and the heard log-mel) carries what no single key
  decides. Twin critics and Polyak-averaged targets as in SAC.
* **Target**: ``r + gamma * (min_i V_i(s') - alpha * KL(pi(.|s') || pi0))`` with
  ``V_i(s') = b_i(s') + sum_k sum_l pi_k(l|s') q_ik(s')[l]``.
* **Actor**: its soft-greedy target is ``B_k(l) ~ pi0(l) exp(min_i q_ik(s)[l] / alpha)``,
  which factors over keys like the actor itself, so the actor fits it by cross-entropy
  ``-sum_k sum_l B_k(l) log pi_k(l|s)``. SAC's own loss, ``KL(pi || B)``, has the same
  minimizer, but its gradient vanishes where ``pi`` has saturated against the critic (a unit
  test showed it stuck at "key up" on a key the critic valued 1.0 higher down).
* **Temperature**: ``ent_coef`` is alpha, in reward units: with the preset's 0.1 a key whose
  press the critic values 0.5 above "up" goes from the prior's 2% to 75% down, and one
  valued 0.5 below to 0.014%. ``ent_coef="auto"`` tunes alpha towards ``target_entropy``
  nats per step (the policy's entropy summed over keys; ``"auto"``: ``0.05 * n_keys``). It
  steers the entropy, not the KL to the prior that the update penalizes, and under a prior
  the entropy is not monotone in alpha (a key worth pressing goes 2% -> 50% -> 100% down as
  alpha falls); on LMMPiano-v0 it stayed silent (BENCHMARKS.md), so the preset fixes alpha.

Why a prior and not plain entropy: "uniform" is SAC's policy for keys the critic knows
nothing about, and a uniform key is down 4 times in 5 (4 of its 5 levels press it). A few
such keys per step and every step sounds wrong, so no single key's press changes the reward
and the critic learns nothing more: in the first grid, SAC with plain entropy (this
algorithm otherwise) went from 2 to ~3000 notes per episode and never came back. Against
``pi0`` an uninformed key stays up. For the same reason exploration starts from the
policy, not from SB3's uniform warm-up actions; ``learning_starts`` only delays the first
update.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC as SB3SAC
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import polyak_update
from torch import nn
from torch.nn import functional as F

from lmm_env.agents.learned.policies import KeyConvSACPolicy, KeyObsExtractor, _conv_stack, _key_layout, _KeyInputs

__all__ = ["SAC", "KeyLevelSACPolicy", "KeyLevelActor", "KeyLevelCritic", "KeyLevelQNet", "levels_to_actions",
           "actions_to_levels"]


def levels_to_actions(levels: torch.Tensor, n_velocities: int) -> torch.Tensor:
    """Env actions of per-key levels: 0 -> -1 (key up), j -> j / n_velocities (down)."""
    a = levels.to(torch.float32) / float(n_velocities)
    return torch.where(levels > 0, a, torch.full_like(a, -1.0))


def actions_to_levels(actions: torch.Tensor, n_velocities: int) -> torch.Tensor:
    """Per-key levels of env actions (the inverse of `levels_to_actions`; any action > 0 is
    down, at the nearest level >= 1)."""
    lv = torch.clamp(torch.round(actions * n_velocities), 1, n_velocities).long()
    return torch.where(actions > 0, lv, torch.zeros_like(lv))


def prior_log_probs(n_velocities: int, press: float) -> torch.Tensor:
    """Log-probabilities of one key's levels under the prior: down with probability ``press``,
    spread evenly over the velocities."""
    prior = torch.full((n_velocities + 1,), float(np.log(press / n_velocities)))
    prior[0] = float(np.log1p(-press))
    return prior


class KeyLevelActor(nn.Module):
    """Per-key level logits ``(batch, n_keys, n_velocities + 1)`` from a conv stack over keys
    and one shared 1x1 head (pitch-equivariant). The head starts with small weights and the
    prior's log-probabilities as bias, so each key starts ``init_press`` likely to go down."""

    def __init__(self, inputs: _KeyInputs, n_velocities: int, channels=(32, 32), kernel_size: int = 5,
                 init_press: float = 0.02, activation_fn: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.inputs = inputs
        self.conv = _conv_stack(inputs.channels, tuple(channels), kernel_size, activation_fn)
        self.head = nn.Conv1d(channels[-1], n_velocities + 1, 1)
        nn.init.normal_(self.head.weight, std=0.01 / np.sqrt(channels[-1]))
        prior = prior_log_probs(n_velocities, init_press)
        self.register_buffer("prior_logp", prior)  # the prior policy (see the module doc)
        with torch.no_grad():
            self.head.bias.copy_(prior)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x, _ = self.inputs.split(features)
        return self.head(self.conv(x)).transpose(1, 2)


class KeyLevelQNet(nn.Module):
    """One factored critic: per-key level values ``q (batch, n_keys, levels)`` and a state
    baseline ``b (batch,)``, so that ``Q(s, a) = b(s) + sum_k q[k, a_k]``."""

    def __init__(self, inputs: _KeyInputs, n_velocities: int, channels=(32, 32), kernel_size: int = 5,
                 audio_hidden: int = 32, hidden: int = 64, activation_fn: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.inputs = inputs
        self.register_buffer("audio_floor", torch.as_tensor(inputs.audio_low), persistent=False)
        self.conv = _conv_stack(inputs.channels, tuple(channels), kernel_size, activation_fn)
        self.head = nn.Conv1d(channels[-1], n_velocities + 1, 1)
        # every level starts (nearly) equally valued, so the first policy is the prior, not the
        # critic's initial noise; small non-zero weights so that gradients reach the conv stack
        nn.init.normal_(self.head.weight, std=0.01 / np.sqrt(channels[-1]))
        nn.init.zeros_(self.head.bias)
        self.audio = nn.Sequential(nn.Linear(inputs.n_mels, audio_hidden), activation_fn())
        self.base = nn.Sequential(nn.Linear(2 * channels[-1] + audio_hidden, hidden), activation_fn(),
                                  nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, audio = self.inputs.split(features)
        h = self.conv(x)
        q = self.head(h).transpose(1, 2)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        a = self.audio((audio - self.audio_floor) / 10.0)
        return q, self.base(torch.cat([pooled, a], dim=1))[:, 0]


class KeyLevelCritic(nn.Module):
    """``n_critics`` `KeyLevelQNet` s (twin critics, as in SAC)."""

    def __init__(self, inputs: _KeyInputs, n_velocities: int, n_critics: int = 2, **kwargs: Any):
        super().__init__()
        self.q_networks = nn.ModuleList(KeyLevelQNet(inputs, n_velocities, **kwargs) for _ in range(n_critics))

    def forward(self, features: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [q(features) for q in self.q_networks]


class KeyLevelSACPolicy(BasePolicy):
    """SAC policy with per-key categorical actions (see the module doc): ``SAC("KeyLevelPolicy", env)``
    with this module's `SAC`.

    Keyword arguments (``policy_kwargs``):

    * ``n_velocities`` (4): velocity levels of a pressed key (velocities 33, 64, 95, 127 for 4).
    * ``actor_channels`` ((32, 32)), ``critic_channels`` ((32, 32)), ``kernel_size`` (5): conv
      stacks over the key axis. ``audio_hidden`` (32), ``critic_hidden`` (64): the critic's
      state baseline. ``n_critics`` (2).
    * ``init_press`` (0.02): each key's initial probability of going down.
    * ``activation_fn`` (nn.ReLU); ``optimizer_class`` / ``optimizer_kwargs`` as in SB3.

    ``predict(obs, deterministic=True)`` plays each key's most likely level. Not for
    ``pedal=True`` envs (their extra action is not a key).
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Box, lr_schedule, *,
                 n_velocities: int = 4, actor_channels=(32, 32), critic_channels=(32, 32), kernel_size: int = 5,
                 audio_hidden: int = 32, critic_hidden: int = 64, init_press: float = 0.02, n_critics: int = 2,
                 activation_fn: type[nn.Module] = nn.ReLU, optimizer_class=torch.optim.Adam,
                 optimizer_kwargs: dict | None = None, share_features_extractor: bool = False,
                 normalize_images: bool = True, use_sde: bool = False, **kwargs: Any):
        if use_sde:
            raise ValueError("KeyLevelPolicy has no state-dependent exploration; use use_sde=False")
        if kwargs:
            raise ValueError(f"KeyLevelPolicy does not take {sorted(kwargs)}; it takes n_velocities, actor_channels, "
                             "critic_channels, kernel_size, audio_hidden, critic_hidden, init_press, n_critics, "
                             "activation_fn, optimizer_class, optimizer_kwargs")
        score_shape, n_keys, n_actions, _ = _key_layout(observation_space, action_space)
        if n_actions != n_keys:
            raise ValueError(f"KeyLevelPolicy has no pedal action, but the env has {n_actions} actions for "
                             f"{n_keys} keys; make the env with pedal=False (or use PPO/A2C with KeyConvPolicy)")
        if not (isinstance(n_velocities, (int, np.integer)) and 1 <= n_velocities <= 127):
            raise ValueError(f"n_velocities={n_velocities!r} must be an int in [1, 127]")
        if not 0.0 < float(init_press) < 1.0:
            raise ValueError(f"init_press={init_press!r} must be a probability in (0, 1)")
        if not np.allclose(action_space.low, -1.0) or not np.allclose(action_space.high, 1.0):
            raise ValueError(f"KeyLevelPolicy needs a Box(-1, 1) action space, got {action_space!r}")
        super().__init__(observation_space, action_space, features_extractor_class=KeyObsExtractor,
                         optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs or {},
                         normalize_images=normalize_images, squash_output=False)
        self.n_velocities = int(n_velocities)
        self._arch = dict(actor_channels=tuple(actor_channels), critic_channels=tuple(critic_channels),
                          kernel_size=int(kernel_size), audio_hidden=int(audio_hidden),
                          critic_hidden=int(critic_hidden), init_press=float(init_press), n_critics=int(n_critics),
                          activation_fn=activation_fn)
        self.features_extractor = self.make_features_extractor()  # parameter-free (shared without cost)
        inputs = _KeyInputs(observation_space)
        a = self._arch
        self.actor = KeyLevelActor(inputs, self.n_velocities, a["actor_channels"], a["kernel_size"], a["init_press"],
                                   activation_fn)
        critic_kwargs = dict(channels=a["critic_channels"], kernel_size=a["kernel_size"],
                             audio_hidden=a["audio_hidden"], hidden=a["critic_hidden"], activation_fn=activation_fn)
        self.critic = KeyLevelCritic(inputs, self.n_velocities, a["n_critics"], **critic_kwargs)
        self.critic_target = KeyLevelCritic(inputs, self.n_velocities, a["n_critics"], **critic_kwargs)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.train(False)
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1),
                                                    **self.optimizer_kwargs)
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1),
                                                     **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._arch, n_velocities=self.n_velocities, optimizer_class=self.optimizer_class,
                    optimizer_kwargs=self.optimizer_kwargs, lr_schedule=self._dummy_schedule)
        return data

    def features(self, obs) -> torch.Tensor:
        return self.extract_features(obs, self.features_extractor)

    def level_logits(self, obs) -> torch.Tensor:
        """``(batch, n_keys, n_velocities + 1)`` logits of each key's level."""
        return self.actor(self.features(obs))

    def _predict(self, observation, deterministic: bool = False) -> torch.Tensor:
        logits = self.level_logits(observation)
        if deterministic:
            # the most likely level: a key whose "down" mass is split over the velocities can stay
            # up (a run pressing when P(down) > 1/2, together with an advantage-min actor target,
            # played more wrong notes: BENCHMARKS.md)
            levels = logits.argmax(dim=-1)
        else:
            levels = torch.distributions.Categorical(logits=logits).sample()
        return levels_to_actions(levels, self.n_velocities)

    def forward(self, obs, deterministic: bool = False) -> torch.Tensor:
        return self._predict(obs, deterministic)

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode


class SAC(SB3SAC):
    """SB3's SAC, which also trains `KeyLevelSACPolicy` ("KeyLevelPolicy") by discrete SAC
    (see the module doc). With any other policy it is SB3's SAC unchanged; the name
    "KeyConvPolicy" is the Gaussian `KeyConvSACPolicy`."""

    policy_aliases = {**SB3SAC.policy_aliases, "KeyConvPolicy": KeyConvSACPolicy, "KeyLevelPolicy": KeyLevelSACPolicy}

    @property
    def _discrete(self) -> bool:
        return isinstance(self.policy, KeyLevelSACPolicy)

    def _setup_model(self) -> None:
        target = self.target_entropy
        super()._setup_model()
        if self._discrete:
            if self.use_sde:
                raise ValueError("KeyLevelPolicy has no state-dependent exploration; use use_sde=False")
            n_keys = int(np.prod(self.action_space.shape))
            most = n_keys * float(np.log(self.policy.n_velocities + 1))
            self.target_entropy = 0.05 * n_keys if target == "auto" else float(target)
            if not 0.0 <= self.target_entropy <= most:
                raise ValueError(f"target_entropy={target!r}: give nats per step (the sum over keys) in "
                                 f"[0, {most:.1f}], e.g. {0.05 * n_keys:.1f} for 0.05 per key")
            if self.ent_coef_optimizer is None and not float(self.ent_coef_tensor) > 0.0:
                raise ValueError(f"ent_coef={self.ent_coef!r} must be > 0 (the temperature divides the critic's "
                                 "values), or 'auto'")

    def _sample_action(self, learning_starts: int, action_noise=None, n_envs: int = 1):
        if not self._discrete:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        if action_noise is not None:
            raise ValueError(f"action_noise={action_noise!r}: KeyLevelPolicy explores by its own sampling; "
                             "use action_noise=None")
        # from the first step on, the policy (not uniform actions: see the module doc)
        action, _ = self.predict(self._last_obs, deterministic=False)
        return action, action

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if not self._discrete:
            return super().train(gradient_steps, batch_size)
        policy: KeyLevelSACPolicy = self.policy
        policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        logs: dict[str, list[float]] = {"ent_coef": [], "actor_loss": [], "critic_loss": [], "entropy": []}
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = data.discounts if data.discounts is not None else self.gamma
            prior = self.actor.prior_logp
            feats = policy.features(data.observations)
            logp = F.log_softmax(self.actor(feats), dim=-1)  # (B, K, L)
            p = logp.exp()
            entropy = -(p * logp).sum(dim=(1, 2))  # (B,)
            if self.ent_coef_optimizer is not None:
                ent_coef = torch.exp(self.log_ent_coef.detach())
                ent_loss = (self.log_ent_coef * (entropy.detach() - self.target_entropy)).mean()
                self.ent_coef_optimizer.zero_grad()
                ent_loss.backward()
                self.ent_coef_optimizer.step()
            else:
                ent_coef = self.ent_coef_tensor
            with torch.no_grad():
                next_feats = policy.features(data.next_observations)
                next_logp = F.log_softmax(self.actor(next_feats), dim=-1)
                next_p = next_logp.exp()
                next_v = torch.stack([b + (next_p * q).sum(dim=(1, 2)) for q, b in self.critic_target(next_feats)])
                kl = (next_p * (next_logp - prior)).sum(dim=(1, 2))
                next_v = next_v.min(dim=0).values - ent_coef * kl
                if torch.is_tensor(discounts):
                    discounts = discounts[:, 0]
                target = data.rewards[:, 0] + (1 - data.dones[:, 0]) * discounts * next_v
            levels = actions_to_levels(data.actions, policy.n_velocities)  # (B, K)
            current = self.critic(feats)
            critic_loss = 0.5 * sum(F.mse_loss(b + q.gather(2, levels[..., None])[..., 0].sum(1), target)
                                    for q, b in current)
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()
            with torch.no_grad():
                # element-wise min over the twin critics, as in SAC. (q_k carries a per-key offset
                # that can move between q_k and b; the min over advantages q - q[up] would remove
                # it, but the one run that tried it, with another change, learned worse: BENCHMARKS.md.)
                q_min = torch.stack([q for q, _ in self.critic(feats)]).min(dim=0).values
                boltzmann = F.softmax(prior + q_min / ent_coef, dim=-1)
            # KL(Boltzmann || pi): same minimizer as SAC's KL(pi || Boltzmann), because the factored
            # critic makes the Boltzmann policy factor over keys exactly as pi does; but its gradient
            # (pi - Boltzmann) does not vanish where pi has saturated against the critic.
            actor_loss = -(boltzmann * logp).sum(dim=(1, 2)).mean()
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            logs["ent_coef"].append(float(ent_coef))
            logs["actor_loss"].append(actor_loss.item())
            logs["critic_loss"].append(critic_loss.item())
            logs["entropy"].append(entropy.mean().item())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for k, v in logs.items():
            self.logger.record(f"train/{k}", float(np.mean(v)))
