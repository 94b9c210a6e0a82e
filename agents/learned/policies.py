"""`KeyConvPolicy`: a pitch-equivariant actor-critic policy for LMMPiano-v0 (SB3 PPO / A2C;
`KeyConvSACPolicy`, the same idea for SAC, answers to the same name in SAC).

    import lmm_env.agents.learned.policies                  # registers the name with PPO and A2C
    from stable_baselines3 import PPO
    from lmm_env.envs import make_sb3_vec_env
    model = PPO("KeyConvPolicy", make_sb3_vec_env(8, max_seconds=12))
    # or, without relying on the alias: PPO(KeyConvPolicy, env)

Why: a piano score is (nearly) the same task at every pitch, so "what to do with key i"
should depend on the score around key i in the same way for every i. A generic MLP on the
flattened (3, 11, 88) score has to learn that 88 times over and, in practice, barely
learns at all; a convolution over the key axis learns it once.

* **Actor** (pitch-equivariant): the score observation ``(3, lookahead+1, n_keys)`` is read
  as ``3 * (lookahead+1)`` channels over the key axis, plus one channel for ``key_state``;
  a stack of 1-D convolutions over keys (zero padding, "same" length) gives per-key
  features, and one shared 1x1 head maps them to each key's mean action. Shifting the
  score and key state by one key shifts the mean action by one key (away from the edges,
  within the receptive field). The head's bias starts at ``init_bias`` (default -1) so
  keys start mostly up; the log-std is one learnable scalar shared by all keys
  (``learn_log_std=False`` fixes it at ``log_std_init``).
* **Critic**: its OWN convolution stack over the same input (no parameters shared with
  the actor), pooled over keys (mean and max), joined with an MLP of the ``audio``
  log-mel, then an MLP to the value. Sharing the feature extractor between policy and
  value made a pitch-equivariant policy collapse to "press nothing" in an earlier probe.

It works for any ``keys=(lo, hi)`` range (the number of keys is read from the spaces)
and the default 88 keys. With ``pedal=True`` the pedal's mean action comes from a linear
head on the key-pooled actor features and the pedal state is fed as one more (constant)
channel. The equivariance is in pitch: with ``layout="shuffled"`` action ``i`` is not
pitch ``lo + i``, so the policy still runs but loses its prior (by design of that layout).

The observation features pass through a parameter-free extractor (`KeyObsExtractor`)
that flattens the Dict; the actor and the critic are the two halves of SB3's
``mlp_extractor`` (`KeyConvExtractor`), so ``forward``, ``evaluate_actions``,
``predict_values`` and ``get_distribution`` are SB3's own.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn

__all__ = ["KeyConvPolicy", "KeyConvSACPolicy", "KeyObsExtractor", "KeyConvExtractor", "KeyQNet",
           "register_sb3_aliases"]


def _key_layout(observation_space: spaces.Space, action_space: spaces.Space | None = None):
    """(score_shape, n_keys, n_actions, n_mels) of an LMMPiano observation space, checked."""
    if not isinstance(observation_space, spaces.Dict) or not {"score", "key_state", "audio"} <= set(observation_space.spaces):
        raise TypeError(
            f"KeyConvPolicy needs LMMPiano-v0's Dict observation with 'score', 'key_state' and 'audio', "
            f"got {observation_space!r}"
        )
    score_shape = tuple(observation_space["score"].shape)
    if len(score_shape) != 3:
        raise ValueError(f"obs['score'] must be (channels, frames, n_keys), got shape {score_shape}")
    n_keys = score_shape[-1]
    n_actions = int(np.prod(observation_space["key_state"].shape))
    if n_actions not in (n_keys, n_keys + 1):
        raise ValueError(f"obs['key_state'] has {n_actions} entries; expected n_keys={n_keys} (+1 with a pedal)")
    if action_space is not None:
        if not isinstance(action_space, spaces.Box) or action_space.shape != (n_actions,):
            raise TypeError(f"KeyConvPolicy needs a Box action of shape ({n_actions},), got {action_space!r}")
    n_mels = int(np.prod(observation_space["audio"].shape))
    return score_shape, n_keys, n_actions, n_mels


class KeyObsExtractor(BaseFeaturesExtractor):
    """Parameter-free: flattens ``score``, ``key_state``, ``audio`` (in that order) into one vector.

    The real feature extraction (separate for actor and critic) happens in `KeyConvExtractor`,
    which unflattens this vector; so sharing this extractor shares no parameters.
    """

    def __init__(self, observation_space: spaces.Dict):
        score_shape, n_keys, n_actions, n_mels = _key_layout(observation_space)
        super().__init__(observation_space, features_dim=int(np.prod(score_shape)) + n_actions + n_mels)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        b = observations["score"].shape[0]
        return torch.cat([observations["score"].reshape(b, -1), observations["key_state"].reshape(b, -1),
                          observations["audio"].reshape(b, -1)], dim=1)


def _conv_stack(c_in: int, channels: tuple[int, ...], kernel_size: int, activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv1d(c_in, c, kernel_size, padding=kernel_size // 2), activation()]
        c_in = c
    return nn.Sequential(*layers)


class _KeyInputs:
    """The layout of `KeyObsExtractor`'s flat vector: split it into a (batch, channels, n_keys)
    conv input (the score frames, the key state, the pedal state as a constant channel) and
    the audio vector."""

    def __init__(self, observation_space: spaces.Dict):
        score_shape, n_keys, n_actions, n_mels = _key_layout(observation_space)
        self.score_shape, self.n_keys, self.n_actions, self.n_mels = score_shape, n_keys, n_actions, n_mels
        self.pedal = n_actions == n_keys + 1
        self.n_score = int(np.prod(score_shape))
        self.channels = score_shape[0] * score_shape[1] + 1 + int(self.pedal)
        # log-mel floor (silence): the critics read (audio - floor) / 10, about 1 per 10 nats
        self.audio_low = np.asarray(observation_space["audio"].low, np.float32).reshape(-1).copy()

    def split(self, features: torch.Tensor):
        b = features.shape[0]
        score = features[:, : self.n_score].reshape(b, -1, self.n_keys)  # (3 * frames, keys)
        state = features[:, self.n_score: self.n_score + self.n_actions]
        audio = features[:, self.n_score + self.n_actions:]
        chans = [score, state[:, None, : self.n_keys]]
        if self.pedal:
            chans.append(state[:, None, self.n_keys:].expand(b, 1, self.n_keys))
        return torch.cat(chans, dim=1), audio


class KeyConvExtractor(nn.Module):
    """SB3's ``mlp_extractor`` slot: an equivariant actor conv stack and a separate critic.

    ``forward_actor`` returns per-key features flattened to ``(batch, channels * n_keys)``
    (`KeyActionHead` turns them into per-key means); ``forward_critic`` returns a
    ``(batch, critic_hidden)`` vector for SB3's linear value head (``critic=False``: no critic).
    """

    def __init__(self, observation_space: spaces.Dict, actor_channels=(32, 32), critic_channels=(16, 16),
                 kernel_size: int = 5, audio_hidden: int = 32, critic_hidden: int = 64,
                 activation_fn: type[nn.Module] = nn.ReLU, critic: bool = True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size} must be odd (so the key axis keeps its length)")
        self.inputs = inputs = _KeyInputs(observation_space)
        self.score_shape, self.n_keys, self.n_actions, self.n_mels = (inputs.score_shape, inputs.n_keys,
                                                                      inputs.n_actions, inputs.n_mels)
        self.pedal, self.n_score = inputs.pedal, inputs.n_score
        self.actor = _conv_stack(inputs.channels, tuple(actor_channels), kernel_size, activation_fn)
        self.register_buffer("audio_floor", torch.as_tensor(inputs.audio_low), persistent=False)
        self.actor_channels = actor_channels[-1]
        self.latent_dim_pi = self.actor_channels * self.n_keys
        self.latent_dim_vf = 0
        if critic:
            self.critic_conv = _conv_stack(inputs.channels, tuple(critic_channels), kernel_size, activation_fn)
            self.critic_audio = nn.Sequential(nn.Linear(self.n_mels, audio_hidden), activation_fn())
            self.critic_mlp = nn.Sequential(nn.Linear(2 * critic_channels[-1] + audio_hidden, critic_hidden),
                                            activation_fn())
            self.latent_dim_vf = critic_hidden

    def _key_input(self, features: torch.Tensor):
        """(batch, channels, n_keys) conv input and the audio vector, from the flat features."""
        return self.inputs.split(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        x, _ = self._key_input(features)
        return self.actor(x).flatten(1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        x, audio = self._key_input(features)
        h = self.critic_conv(x)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        a = self.critic_audio((audio - self.audio_floor) / 10.0)
        return self.critic_mlp(torch.cat([pooled, a], dim=1))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class KeyActionHead(nn.Module):
    """Per-key mean action from per-key features: one 1x1 conv shared by all keys (+ a pedal head)."""

    def __init__(self, channels: int, n_keys: int, pedal: bool, init_bias: float, init_gain: float = 0.01,
                 key_bias: bool = False):
        super().__init__()
        self.channels, self.n_keys = channels, n_keys
        # optional learned per-key offset of the mean (KeyConvPolicy(key_bias=True)); starts at 0
        self.key_bias = nn.Parameter(torch.zeros(n_keys)) if key_bias else None
        self.head = nn.Conv1d(channels, 1, 1)
        nn.init.normal_(self.head.weight, std=init_gain / np.sqrt(channels))
        nn.init.constant_(self.head.bias, init_bias)
        self.pedal_head = None
        if pedal:
            self.pedal_head = nn.Linear(channels, 1)
            nn.init.normal_(self.pedal_head.weight, std=init_gain / np.sqrt(channels))
            nn.init.constant_(self.pedal_head.bias, init_bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        h = latent.reshape(latent.shape[0], self.channels, self.n_keys)
        mean = self.head(h)[:, 0]
        if self.key_bias is not None:
            mean = mean + self.key_bias
        if self.pedal_head is not None:
            mean = torch.cat([mean, self.pedal_head(h.mean(dim=2))], dim=1)
        return mean


class KeyConvPolicy(ActorCriticPolicy):
    """Pitch-equivariant actor (conv over keys, shared per-key head) + separate critic; see the module doc.

    Keyword arguments (``policy_kwargs``), beside ActorCriticPolicy's optimizer ones:

    * ``actor_channels`` ((32, 32)), ``critic_channels`` ((16, 16)), ``kernel_size`` (5):
      the conv stacks over the key axis (receptive field ``1 + len * (kernel_size - 1)`` keys).
    * ``audio_hidden`` (32), ``critic_hidden`` (64): the critic's audio MLP and final layer.
    * ``init_bias`` (-1.0): initial mean action of every key (< 0: keys start up).
    * ``log_std_init`` (-0.5): initial log-std, one scalar for all actions;
      ``learn_log_std`` (True) makes it learnable.
    * ``activation_fn`` (nn.ReLU).
    * ``key_bias`` (False): add a learned per-key bias to the mean action (it breaks the pitch
      equivariance on purpose: with no score to read, e.g. in LMMImprovise-v0's free play,
      it lets the policy prefer a register).
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Box, lr_schedule, *,
                 actor_channels=(32, 32), critic_channels=(16, 16), kernel_size: int = 5, audio_hidden: int = 32,
                 critic_hidden: int = 64, init_bias: float = -1.0, log_std_init: float = -0.5,
                 learn_log_std: bool = True, activation_fn: type[nn.Module] = nn.ReLU, key_bias: bool = False,
                 **kwargs: Any):
        _key_layout(observation_space, action_space)
        fixed = {"net_arch": None, "use_sde": False, "squash_output": False, "share_features_extractor": True,
                 "features_extractor_class": KeyObsExtractor, "features_extractor_kwargs": None}
        for name, value in fixed.items():
            given = kwargs.pop(name, value)
            if given != value and not (name == "features_extractor_kwargs" and not given):
                raise ValueError(f"KeyConvPolicy does not take {name}={given!r} (it fixes {name}={value!r})")
        self._key_kwargs = dict(actor_channels=tuple(actor_channels), critic_channels=tuple(critic_channels),
                                kernel_size=int(kernel_size), audio_hidden=int(audio_hidden),
                                critic_hidden=int(critic_hidden), activation_fn=activation_fn)
        self.init_bias = float(init_bias)
        self.learn_log_std = bool(learn_log_std)
        self.key_bias = bool(key_bias)
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, activation_fn=activation_fn,
                         log_std_init=log_std_init, features_extractor_class=KeyObsExtractor,
                         share_features_extractor=True, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for k in ("net_arch", "use_sde", "squash_output", "share_features_extractor", "features_extractor_class",
                  "features_extractor_kwargs"):
            data.pop(k, None)
        data.update(self._key_kwargs, init_bias=self.init_bias, learn_log_std=self.learn_log_std)
        if self.key_bias:
            data["key_bias"] = True
        return data

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = KeyConvExtractor(self.observation_space, **self._key_kwargs)

    def _build(self, lr_schedule) -> None:
        self._build_mlp_extractor()
        if not isinstance(self.action_dist, DiagGaussianDistribution):
            raise TypeError(f"KeyConvPolicy needs a diagonal Gaussian action distribution, got {self.action_dist!r}")
        ex = self.mlp_extractor
        self.action_net = KeyActionHead(ex.actor_channels, ex.n_keys, ex.pedal, self.init_bias,
                                        key_bias=getattr(self, "key_bias", False))
        # one log-std for all keys (a per-key one would break the equivariance); it broadcasts
        # in DiagGaussianDistribution.proba_distribution.
        self.log_std = nn.Parameter(torch.full((1,), float(self.log_std_init)), requires_grad=self.learn_log_std)
        self.value_net = nn.Linear(ex.latent_dim_vf, 1)
        if self.ortho_init:
            for module, gain in ((ex, np.sqrt(2)), (self.value_net, 1.0)):
                module.apply(lambda m, g=gain: self.init_weights(m, gain=g))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- SAC


class KeyQNet(nn.Module):
    """Q(s, a) for SAC: a conv stack over keys whose channels are the score frames, the key
    state and the action (the action is per key too), pooled over keys (mean and max),
    joined with an MLP of the ``audio`` log-mel, then an MLP to one value."""

    def __init__(self, observation_space: spaces.Dict, channels=(32, 32), kernel_size: int = 5,
                 audio_hidden: int = 32, hidden: int = 64, activation_fn: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.inputs = inputs = _KeyInputs(observation_space)
        self.register_buffer("audio_floor", torch.as_tensor(inputs.audio_low), persistent=False)
        n_action_channels = 1 + int(inputs.pedal)
        self.conv = _conv_stack(inputs.channels + n_action_channels, tuple(channels), kernel_size, activation_fn)
        self.audio = nn.Sequential(nn.Linear(inputs.n_mels, audio_hidden), activation_fn())
        self.mlp = nn.Sequential(nn.Linear(2 * channels[-1] + audio_hidden, hidden), activation_fn(),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        inputs = self.inputs
        x, audio = inputs.split(features)
        chans = [x, actions[:, None, : inputs.n_keys]]
        if inputs.pedal:
            chans.append(actions[:, None, inputs.n_keys:].expand(-1, 1, inputs.n_keys))
        h = self.conv(torch.cat(chans, dim=1))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        a = self.audio((audio - self.audio_floor) / 10.0)
        return self.mlp(torch.cat([pooled, a], dim=1))


class KeyConvSACCritic(ContinuousCritic):
    """SB3's ``ContinuousCritic`` with `KeyQNet` Q-networks (``n_critics`` of them)."""

    def __init__(self, observation_space, action_space, net_arch, features_extractor, features_dim,
                 activation_fn=nn.ReLU, normalize_images: bool = True, n_critics: int = 2,
                 share_features_extractor: bool = False, critic_channels=(32, 32), kernel_size: int = 5,
                 audio_hidden: int = 32, critic_hidden: int = 64):
        BaseModel.__init__(self, observation_space, action_space, features_extractor=features_extractor,
                           normalize_images=normalize_images)
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        self.q_networks = []
        for idx in range(n_critics):
            q_net = KeyQNet(observation_space, critic_channels, kernel_size, audio_hidden, critic_hidden, activation_fn)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def forward(self, obs, actions):
        with torch.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        return tuple(q(features, actions) for q in self.q_networks)

    def q1_forward(self, obs, actions):
        with torch.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return self.q_networks[0](features, actions)


class KeyConvSACActor(Actor):
    """SAC's squashed-Gaussian actor, pitch-equivariant: per-key mean and log-std from one
    conv stack over keys and two shared 1x1 heads (so the log-std is per key, yet the same
    function of the score around each key)."""

    def __init__(self, observation_space, action_space, net_arch, features_extractor, features_dim,
                 activation_fn=nn.ReLU, use_sde: bool = False, log_std_init: float = -1.0, full_std: bool = True,
                 use_expln: bool = False, clip_mean: float = 2.0, normalize_images: bool = True,
                 actor_channels=(32, 32), kernel_size: int = 5, init_bias: float = -1.0):
        if use_sde:
            raise ValueError("KeyConvPolicy for SAC does not support use_sde=True")
        super().__init__(observation_space, action_space, [], features_extractor, features_dim, activation_fn,
                         use_sde=False, log_std_init=log_std_init, normalize_images=normalize_images)
        ex = KeyConvExtractor(observation_space, actor_channels=tuple(actor_channels), kernel_size=kernel_size,
                              activation_fn=activation_fn, critic=False)
        self.keys = ex
        self.mu = KeyActionHead(ex.actor_channels, ex.n_keys, ex.pedal, init_bias)
        self.log_std = KeyActionHead(ex.actor_channels, ex.n_keys, ex.pedal, log_std_init)

    def get_action_dist_params(self, obs):
        features = self.extract_features(obs, self.features_extractor)
        h = self.keys.forward_actor(features)
        log_std = torch.clamp(self.log_std(h), LOG_STD_MIN, LOG_STD_MAX)
        return self.mu(h), log_std, {}


class KeyConvSACPolicy(SACPolicy):
    """`KeyConvPolicy` for SAC (``SAC("KeyConvPolicy", env)`` after importing this module):
    a pitch-equivariant squashed-Gaussian actor (`KeyConvSACActor`) and Q-networks that read
    the action as one more channel over the keys (`KeyQNet`).

    Keyword arguments (``policy_kwargs``), beside SACPolicy's optimizer and ``n_critics`` ones:
    ``actor_channels`` ((32, 32)), ``critic_channels`` ((32, 32)), ``kernel_size`` (5),
    ``audio_hidden`` (32), ``critic_hidden`` (64), ``init_bias`` (-1.0: keys start up),
    ``log_std_init`` (-1.0: the initial per-key log-std before the tanh squashing),
    ``activation_fn`` (nn.ReLU).
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Box, lr_schedule, *,
                 actor_channels=(32, 32), critic_channels=(32, 32), kernel_size: int = 5, audio_hidden: int = 32,
                 critic_hidden: int = 64, init_bias: float = -1.0, log_std_init: float = -1.0,
                 activation_fn: type[nn.Module] = nn.ReLU, **kwargs: Any):
        _key_layout(observation_space, action_space)
        for name, value in (("net_arch", None), ("use_sde", False), ("features_extractor_class", KeyObsExtractor)):
            given = kwargs.pop(name, value)
            if given != value:
                raise ValueError(f"KeyConvPolicy does not take {name}={given!r} (it fixes {name}={value!r})")
        self._key_actor = dict(actor_channels=tuple(actor_channels), kernel_size=int(kernel_size),
                               init_bias=float(init_bias))
        self._key_critic = dict(critic_channels=tuple(critic_channels), kernel_size=int(kernel_size),
                                audio_hidden=int(audio_hidden), critic_hidden=int(critic_hidden))
        super().__init__(observation_space, action_space, lr_schedule, net_arch=[], activation_fn=activation_fn,
                         log_std_init=log_std_init, features_extractor_class=KeyObsExtractor, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        for k in ("net_arch", "use_sde", "features_extractor_class", "features_extractor_kwargs", "use_expln",
                  "clip_mean"):
            data.pop(k, None)
        data.update(self._key_actor, **{k: v for k, v in self._key_critic.items() if k != "kernel_size"})
        return data

    def make_actor(self, features_extractor=None) -> KeyConvSACActor:
        kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return KeyConvSACActor(**kwargs, **self._key_actor).to(self.device)

    def make_critic(self, features_extractor=None) -> KeyConvSACCritic:
        kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return KeyConvSACCritic(**kwargs, **self._key_critic).to(self.device)


def register_sb3_aliases() -> None:
    """Let SB3's PPO, A2C and SAC resolve ``"KeyConvPolicy"`` (adds to their ``policy_aliases``)."""
    from stable_baselines3 import A2C, PPO, SAC

    for algo, cls in ((PPO, KeyConvPolicy), (A2C, KeyConvPolicy), (SAC, KeyConvSACPolicy)):
        current = algo.policy_aliases.get("KeyConvPolicy")
        if current is None:
            # policy_aliases is a per-class ClassVar dict; copy before adding, so a dict that
            # a parent class shares is never changed under it.
            algo.policy_aliases = {**algo.policy_aliases, "KeyConvPolicy": cls}


register_sb3_aliases()
