"""One registry of agents: every baseline, oracle, shipped policy and learned agent, by name.

    from lmm_env.agents import load_agent
    agent = load_agent("diff-h", env, pairs=16)          # the ear of 16 pairs
    agent = load_agent("gradient", env, ear=my_ear)      # an ear of your instrument (object or file)
    agent = load_agent("runs/ppo/checkpoints/best.safetensors", env)
    agents_for("LMMDecipher-v0")                         # ['random', 'score-reader', 'babble', ...]

``lmm-env agents`` prints `AGENTS` as a table. The CLI (``--agent`` of play, eval and
benchmark), `lmm_env.agents.evaluate` and the benchmark all build agents through
`load_agent`, so a name means the same agent everywhere.

Options mean the same for every agent (`OPTIONS`):

- ``pairs=K``: the ear of K score-audio pairs (0, 4, 16, 64 or "all"; `lmm_env.pairs`);
- ``ear=``: an ear object or the file of a saved one, instead of ``pairs``;
- ``seed``: the agent's own randomness (its exploration, its sampling).

An agent takes only the options listed in its entry; any other is refused by name (a
ValueError), never silently ignored. Every entry also says which tasks it plays, whether
it is an *oracle* (reads what the task hides: the hidden score, the hidden layout; the
benchmark labels oracles and refuses the hidden layout to every other agent), what it
learned from, and how to retrain it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from lmm_env import TASK_IDS as TASKS  # the registered task ids, in the protocol's order
from lmm_env._checks import check_seed, short_repr

OPTIONS = ("pairs", "ear", "seed")
"""The options an agent may take; each entry's ``options`` says which of them it does."""
OPTION_HELP = {"pairs": "pairs=K: the ear of K score-audio pairs (0, 4, 16, 64, 'all')",
               "ear": "ear=<ear object or .safetensors file>: the ear to listen with, instead of pairs",
               "seed": "seed=int >= 0: the agent's own randomness"}
WEIGHTS = Path(__file__).resolve().parent / "weights"
# Trained policies shipped in the package (safetensors; scripts/train/ has the commands that made them).
SHIPPED = {"ppo-closed-loop": "ppo-closed-loop.safetensors", "ppo-improvise": "ppo-improvise.safetensors"}


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """A registered agent.

    ``factory(env, pairs, seed, **extra)`` builds it for ``env``: ``pairs`` and ``seed`` are
    None unless given (and taken), ``extra`` holds ``ear`` when given. ``tasks`` it plays;
    ``oracle`` if it reads hidden state; ``options``: which of `OPTIONS` it takes (others are
    refused by name); ``learned_from``: its training data (K pairs, instrument, env steps or
    world samples; "nothing" for an agent that does not learn); ``retrain``: the command or
    script that made its weights (empty if it has none)."""

    factory: Callable
    tasks: tuple
    oracle: bool
    description: str
    options: tuple = ("pairs", "seed")  # what a user-made spec (the old signature) was handed
    learned_from: str = ""
    retrain: str = ""
    role: str = "baseline"  # baseline | oracle | pairs-only | learned | outside: where it lives, its table group
    # an outside agent's paired training data in a few words ("MAESTRO v3, ~200 h"): tables tag its rows with it,
    # so pairs-hungry supervision reads beside LMM's K pairs
    pairs_label: str = ""

    @property
    def kind(self) -> str:
        """"oracle" for an oracle, else its ``role``."""
        return "oracle" if self.oracle else self.role


def _random(env, pairs, seed):
    from lmm_env.agents.baselines.simple import RandomAgent

    return RandomAgent(env, seed=seed)


def _score_reader(env, pairs, seed):
    from lmm_env.agents.baselines.simple import ScoreReaderAgent

    return ScoreReaderAgent(env)


def _shipped(name):
    def build(env, pairs, seed):
        return _checkpoint_agent(WEIGHTS / SHIPPED[name], env, seed, name)

    return build


def _babble(env, pairs, seed, ear=None):
    from lmm_env.agents.baselines.decipher import BabbleAgent

    return BabbleAgent(env, pairs=pairs, ear=ear)


def _decipher_closed_loop(env, pairs, seed, ear=None):
    from lmm_env.agents.learned.decipher import ListeningDecipherAgent
    from lmm_env.agents.learned.differentiable import DiffPolicy, shipped_path

    # the learned g (diff-g) decides what to play over score pitches; the learned map puts it on keys
    return ListeningDecipherAgent(env, pairs=pairs, seed=seed, ear=ear, actor=DiffPolicy.load(shipped_path("g")))


def _reference_oracle(env, pairs, seed):
    from lmm_env.agents.baselines.by_ear import ReferenceOracle

    return ReferenceOracle(env)


def _gradient(env, pairs, seed, ear=None):
    from lmm_env.agents.baselines.by_ear import ByEarGradientAgent

    return ByEarGradientAgent(env, pairs=pairs, ear=ear)


def _ear_reader(env, pairs, seed, ear=None):
    from lmm_env.agents.baselines.pairs_only import EarReaderAgent

    return EarReaderAgent(env, pairs=pairs, ear=ear)


def _outside(cls_name):
    def build(env, pairs, seed):
        from lmm_env.agents.baselines import transcribers

        return getattr(transcribers, cls_name)(env)

    return build


def _world_transcriber(env, pairs, seed):
    from lmm_env.agents.learned.world_transcriber import WorldTranscriberAgent

    return WorldTranscriberAgent(env, pairs=pairs, seed=seed)


def _supervised_g(env, pairs, seed):
    from lmm_env.agents.baselines.pairs_only import train_supervised_g
    from lmm_env.agents.learned.differentiable import DiffAgent
    from lmm_env.pairs import check_k

    K = check_k(16 if pairs is None else pairs)
    # K = 0 leaves nothing to learn from: the untrained network, the floor of the K-pairs table
    return DiffAgent(env, train_supervised_g(K, seed=seed or 0))


def _diff(kind):
    def build(env, pairs, seed, ear=None):
        from lmm_env.agents.learned.differentiable import make_diff_agent

        return make_diff_agent(kind, env, pairs=pairs, ear=ear)

    return build


def _listening_g(env, pairs, seed):
    from lmm_env.agents.learned.listening import ListeningGAgent

    return ListeningGAgent(env)


def _repeat_prompt(env, pairs, seed):
    from lmm_env.agents.baselines.improvise import RepeatPromptAgent

    return RepeatPromptAgent(env)


def _motion_lm(env, pairs, seed):
    from lmm_env.agents.learned.improviser import MotionLMAgent

    return MotionLMAgent(env, seed=0 if seed is None else seed)


def _lm_sampler(env, pairs, seed):
    from lmm_env.agents.baselines.improvise import ScoreLMSamplerAgent

    return ScoreLMSamplerAgent(env, seed=seed)


_NOTHING = "nothing (does not learn)"
_PIANO, _DECIPHER, _BY_EAR, _IMPROVISE = TASKS

AGENTS: dict[str, AgentSpec] = {
    "random": AgentSpec(_random, TASKS, False, "uniform random actions", ("seed",), _NOTHING),
    "score-reader": AgentSpec(_score_reader, (_PIANO, _DECIPHER), True,
                              "reads the score (and, on the hidden keyboard, the hidden layout): plays perfectly",
                              (), _NOTHING, role="oracle"),
    "ppo-closed-loop": AgentSpec(
        _shipped("ppo-closed-loop"), (_PIANO,), False,
        "shipped PPO + KeyConvPolicy trained on the closed-loop reward", (),
        "300k env steps of LMMPiano-v0 (folk train split, built-in piano, closed-loop reward with the analytic ear)",
        "scripts/train/ppo_closed_loop.sh", role="learned"),
    "babble": AgentSpec(_babble, (_DECIPHER,), False,
                        "presses each key once alone, reads its pitch with the ear, then reads the score",
                        ("pairs", "ear"), "nothing; listens with the ear of K pairs of the world's instrument"),
    "decipher-closed-loop": AgentSpec(
        _decipher_closed_loop, (_DECIPHER,), False,
        "learns key -> heard pitch from its own strikes while it plays (with the ear) and puts the learned g "
        "(diff-g) on keys through the inverted map", ("pairs", "ear", "seed"),
        "learns the keyboard from its own strikes while it plays (ear of K pairs of the world's instrument); "
        "its g is diff-g's", "scripts/train/diff_g.sh (its g); nothing to retrain for the keyboard", role="learned"),
    "reference-oracle": AgentSpec(_reference_oracle, (_BY_EAR,), True, "plays the hidden reference notes of the target",
                                  (), _NOTHING, role="oracle"),
    "gradient": AgentSpec(_gradient, (_BY_EAR,), False,
                          "transcribes the whole target by gradient descent through the differentiable piano, "
                          "starting from the ear's reading", ("pairs", "ear"),
                          "nothing; a per-piece search initialized by the ear of K pairs (built-in piano)"),
    "ear-reader": AgentSpec(_ear_reader, (_BY_EAR,), False,
                            "plays what the ear transcribes from the target, at one velocity (pairs only, no LM)",
                            ("pairs", "ear"), "the K pairs alone, through the ear fitted on them (default K = 16)",
                            "scripts/train/ears.sh (the shipped ears of K = 4, 16, 64)", role="pairs-only"),
    "basic-pitch": AgentSpec(
        _outside("BasicPitchAgent"), (_BY_EAR,), False,
        "basic-pitch (Spotify, ICASSP 2022), an off-the-shelf note transcriber (ONNX), writes the target down; "
        "its notes are played", (),
        "outside: supervised on hours of paired audio and MIDI (GuitarSet, iKala, MAESTRO, MedleyDB-Pitch, Slakh); "
        "not trained here", "- (optional; install: see lmm_env.agents.baselines.transcribers)", role="outside",
        pairs_label="hours of pairs of 5 datasets, MAESTRO among them"),
    "transkun": AgentSpec(
        _outside("TranskunAgent"), (_BY_EAR,), False,
        "Transkun V2 (a semi-CRF transformer piano transcriber) writes the target down; its notes are played", (),
        "outside: supervised on MAESTRO v3, ~200 hours of paired piano audio and MIDI; not trained here",
        "- (optional; install: see lmm_env.agents.baselines.transcribers)", role="outside",
        pairs_label="~200 h of MAESTRO v3 pairs"),
    "supervised-g": AgentSpec(_supervised_g, (_PIANO,), False,
                              "diff-g's network fitted on the K pairs alone by supervised learning (no LM, no "
                              "closed loop): the comparison for LM mapping", ("pairs", "seed"),
                              "learns the K pairs' scores at build time (400 steps, seconds; default K = 16; untrained at K = 0)", role="pairs-only"),
    "diff-g": AgentSpec(_diff("g"), (_PIANO,), False,
                        "g (score -> keys) learned by backpropagation through the differentiable piano and the ear", (),
                        "20,224 world samples of the differentiable piano (folk + Bach train split), analytic ear, "
                        "no pairs", "scripts/train/diff_g.sh", role="learned"),
    "listening-g": AgentSpec(
        _listening_g, (_PIANO,), False,
        "g for two-hand music: keys learned through the differentiable piano and the ear; velocities learned by ear "
        "while it plays (its strikes heard against its body model), so each sounds as loud as the score asks on "
        "the env's loudness_reference", (),
        "60,160 world samples of the differentiable piano (piano corpus train split), analytic ear, no pairs; "
        "velocity: the episode's own strikes", "scripts/train/listening_g.sh", role="learned"),
    "diff-h": AgentSpec(_diff("h"), (_BY_EAR,), False,
                        "h (heard target -> keys) learned by backpropagation through the differentiable piano and "
                        "the ear", ("pairs", "ear"),
                        "20,224 world samples of the differentiable piano (folk + Bach train split), ear of 16 pairs "
                        "of the built-in piano (plays with the ear of its K unless pairs= or ear= is given)",
                        "scripts/train/diff_h.sh", role="learned"),
    "world-transcriber": AgentSpec(
        _world_transcriber, (_BY_EAR,), False,
        "a note transcriber (conv net, onset/frame/velocity per key) pretrained on the world's own pianos and adapted "
        "on the K pairs of the target's instrument writes the target down; its notes are played", ("pairs", "seed"),
        "2,500 x 8 two-second windows of the world's pianos (built-in + grand, piano/folk/Bach train splits, random "
        "colour and rooms), then 500 steps on the K pairs of the target's instrument (default K = 16; K = 0: as shipped)",
        "scripts/train/transcriber.sh (pretraining; adapting to an instrument runs once at first use and is cached)",
        role="learned"),
    "repeat-prompt": AgentSpec(_repeat_prompt, (_IMPROVISE,), False, "plays the prompt again and again", (), _NOTHING),
    "lm-sampler": AgentSpec(_lm_sampler, (_IMPROVISE,), False,
                            "samples frames from LM^V (the score LM) and plays them on the known keyboard", ("seed",),
                            "nothing itself; LM^V is the shipped score LM", "scripts/train/score_lm.sh (LM^V)"),
    "ppo-improvise": AgentSpec(
        _shipped("ppo-improvise"), (_IMPROVISE,), False,
        "shipped PPO + KeyConvPolicy trained on the improvise reward, played by sampling", ("seed",),
        "491,520 env steps of LMMImprovise-v0 (folk prompts, train split, built-in piano, improvise reward)",
        "scripts/train/ppo_improvise.sh", role="learned"),
    "motion-lm": AgentSpec(
        _motion_lm, (_IMPROVISE,), False,
        "the motion LM (LM^M, a GRU over notes with velocity and hold) reads the prompt, then plays its sampled "
        "continuation 2 s at a time, the likeliest of 4 plans under LM^V, reading back each note it plays", ("seed",),
        "the train splits of the piano, folk and Bach corpora as notes (transposed, tempo-scaled), 3,000 steps "
        "of 32 x 160 notes", "scripts/train/motion_lm.sh", role="learned"),
}
"""Every registered agent by name: what `load_agent`, ``--agent`` and the benchmark accept."""


def agents_for(task: str) -> list[str]:
    """Names of the registered agents that play ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {list(TASKS)}")
    return [n for n, s in AGENTS.items() if task in s.tasks]


_TASK_CLASSES = {"LMMPianoEnv": "LMMPiano-v0", "LMMDecipherEnv": "LMMDecipher-v0", "LMMByEarEnv": "LMMByEar-v0",
                 "LMMImproviseEnv": "LMMImprovise-v0"}


def task_of(env) -> str | None:
    """The lmm_env task id ``env`` plays (from its spec, or its class when made without gym.make); None if unknown."""
    for e in (env, getattr(env, "unwrapped", None)):
        spec_id = getattr(getattr(e, "spec", None), "id", None)
        if spec_id in TASKS:
            return spec_id
    return _TASK_CLASSES.get(type(getattr(env, "unwrapped", env)).__name__)


def check_env(env) -> None:
    """Refuse what is not an lmm_env task env (agents read its world), naming what was given."""
    if env is None or not hasattr(getattr(env, "unwrapped", None), "sim"):
        raise ValueError(f"env={short_repr(env)} is not an lmm_env task env; give gym.make(task) of one of {list(TASKS)}")


def check_task(agent: str, tasks, env) -> None:
    """Refuse to build ``agent`` (which plays ``tasks``) for an env of another task, naming both."""
    task = task_of(env)
    if task is not None and task not in tasks:
        raise ValueError(f"agent {agent!r} does not play {task}; it plays {list(tasks)}")


def check_options(agent: str, options: dict, takes) -> None:
    """Refuse an unknown option, or one that ``agent`` (which takes ``takes``) does not use, naming it."""
    unknown = sorted(k for k in options if k not in OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for agent {agent!r}; the options are "
                         + "; ".join(OPTION_HELP.values()))
    unused = [k for k in OPTIONS if k in options and options[k] is not None and k not in takes]
    if unused:
        takes_s = ", ".join(takes) if takes else "no options"
        raise ValueError(f"agent {agent!r} does not use {', '.join(unused)} (it takes {takes_s}); leave "
                         f"{'it' if len(unused) == 1 else 'them'} out")


def _is_checkpoint(agent) -> bool:
    return isinstance(agent, (str, os.PathLike)) and os.fspath(agent).lower().endswith(".safetensors")


def check_spaces(agent, env, what) -> None:
    """A trained policy acts in the spaces it was trained in: refuse an env whose observations differ."""
    space = getattr(agent, "observation_space", None)
    want = env.observation_space
    if space is None or not hasattr(space, "spaces") or not hasattr(want, "spaces"):
        return
    mine = {k: tuple(v.shape) for k, v in space.spaces.items()}
    theirs = {k: tuple(v.shape) for k, v in want.spaces.items()}
    if mine != theirs:
        raise ValueError(f"agent {what!r} was trained on observations {mine}, but this env gives {theirs} "
                         "(a different key range, lookahead or task); train it with this env's arguments")


def _checkpoint_agent(path, env, seed, label):
    """The policy of a safetensors checkpoint, checked against ``env``; one trained on LMMImprovise-v0
    is played by sampling it (`PolicySamplerAgent`, seeded: its mean alone loops). A ``seed``
    given to a policy that is not sampled is refused: it would be ignored."""
    from lmm_env.agents.training.checkpoints import IMPROVISE_ID, load_policy

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"agent checkpoint {path!r} is a directory, not a file")
    if not os.path.isfile(path):
        if label in SHIPPED:
            raise FileNotFoundError(f"the shipped weights of {label!r} are missing: {path}")
        raise FileNotFoundError(f"agent checkpoint {path!r} does not exist")
    policy = load_policy(path)
    agent = policy
    if policy.env_id == IMPROVISE_ID:
        from lmm_env.agents.baselines.improvise import PolicySamplerAgent

        agent = PolicySamplerAgent(policy, seed=0 if seed is None else seed)
        agent.env_id, agent.world = policy.env_id, policy.world
    elif seed is not None:
        raise ValueError(f"agent {label!r} does not use seed (a policy trained on {policy.env_id} acts "
                         "deterministically); leave it out")
    if env is not None:
        check_task(label, (policy.env_id,), env)
        check_spaces(policy, env, label)
        sim = env.unwrapped.sim
        here = {"frame_rate": float(sim.frame_rate), "sample_rate": int(sim.sample_rate)}
        if policy.world != here:
            raise ValueError(f"agent {label!r} was trained at {policy.world}, but this env runs at {here}; its "
                             "observations would mean other things: make the env at the policy's rates")
    return agent


def load_agent(agent, env=None, **options):
    """The agent ``agent`` names, built for ``env``.

    Args:
        agent: a registered name (`AGENTS`; ``lmm-env agents`` lists them), a training
            checkpoint (``.safetensors`` written by `lmm_env.agents.train` or the RLlib
            export; it rebuilds its own model and never unpickles or imports anything), or an
            object with ``predict`` (returned as is).
        env: the env it will play (``gym.make(task)``). Every agent but a policy needs it (they
            read its keyboard); given, an agent that does not play its task, or a policy
            trained on other observation shapes or rates, is refused here, not at its first
            ``predict``.
        **options: ``pairs=K``, ``ear=`` (an ear object or file) and ``seed``, each only for
            an agent that takes it (its entry's ``options``); anything else is refused by name.
    """
    if hasattr(agent, "predict") and not isinstance(agent, (str, os.PathLike)):
        check_options(type(agent).__name__, options, ())
        return agent
    given = {k: v for k, v in options.items() if v is not None}
    if "seed" in given:
        check_seed(given["seed"])
    if env is not None:
        check_env(env)
    if _is_checkpoint(agent):
        label = os.fspath(agent)
        check_options(label, options, ("seed",))
        return _checkpoint_agent(agent, env, given.get("seed"), label)
    if not isinstance(agent, str) or agent not in AGENTS:
        raise ValueError(f"agent {short_repr(agent)} is not allowed; use a registered agent ({', '.join(AGENTS)}; "
                         "`lmm-env agents` describes them), a training checkpoint (.safetensors), or an object with "
                         "predict(obs, deterministic=True) -> (action, state) (e.g. an SB3 model)")
    spec = AGENTS[agent]
    check_options(agent, options, spec.options)
    if env is None:
        if agent in SHIPPED:
            return spec.factory(None, None, given.get("seed"))
        raise ValueError(f"load_agent({agent!r}) needs the env it will play: load_agent({agent!r}, gym.make(task)) "
                         f"with a task of {list(spec.tasks)}")
    check_task(agent, spec.tasks, env)
    if "pairs" in given:
        from lmm_env.pairs import check_k

        given["pairs"] = check_k(given["pairs"])
    seed = given.get("seed")
    if seed is None and "seed" in spec.options:
        seed = 0
    extra = {"ear": given["ear"]} if "ear" in given else {}
    return spec.factory(env, given.get("pairs"), seed, **extra)


def make_agent(name: str, env, pairs=None, seed: int = 0):
    """Agent ``name`` built for ``env``: `load_agent` with ``pairs`` (refused by an agent that does not
    listen) and ``seed`` (handed on only to an agent that takes one). Kept for older code."""
    if not isinstance(name, str) or name not in AGENTS:
        raise ValueError(f"unknown agent {short_repr(name)}; registered: {sorted(AGENTS)} (or a .safetensors checkpoint)")
    if seed is None or check_seed(seed) is None:
        raise ValueError("seed=None is not allowed; use an int >= 0")
    check_env(env)
    options = {"pairs": pairs}
    if "seed" in AGENTS[name].options:
        options["seed"] = seed
    return load_agent(name, env, **options)


def agent_table(markdown: bool = True) -> str:
    """`AGENTS` as a table: name, kind, tasks, options, what it learned from, how to retrain it."""
    head = ["agent", "kind", "tasks", "options", "learned from", "retrain"]
    rows = [[name, s.kind, ", ".join(t.replace("LMM", "").replace("-v0", "") for t in s.tasks),
             ", ".join(s.options) or "-", s.learned_from or "-", s.retrain or "-"] for name, s in AGENTS.items()]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    return "\n\n".join(f"{r[0]} ({r[1]}; plays {r[2]}; options: {r[3]})\n  {AGENTS[r[0]].description}\n"
                       f"  learned from: {r[4]}\n  retrain: {r[5]}" for r in rows)
