"""``lmm-env``: train, evaluate, play and benchmark agents on every lmm_env task from the shell.

    lmm-env train --algo ppo --steps 300000 --logdir runs/ppo
    lmm-env eval --agent runs/ppo/checkpoints/last.safetensors --episodes 20
    lmm-env eval --agent diff-h --pairs 16          # any registered agent, on its own task
    lmm-env agents                                  # what --agent takes
    lmm-env play tune.mid --agent score-reader --out out/
    lmm-env bench
    lmm-env benchmark --agent baselines --quick --out out/bench

Each subcommand's ``--help`` lists its options.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from lmm_env import TASK_IDS


def _json_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"lmm-env: {what} must be a JSON object, e.g. '{{\"max_seconds\": 20}}': {exc}")
    if not isinstance(value, dict):
        raise SystemExit(f"lmm-env: {what} must be a JSON object, got {text!r}")
    return value



def _task(command: str, env_id, allowed=TASK_IDS) -> str:
    """``--env``, checked before anything is built (gymnasium's own error is a traceback)."""
    if env_id not in allowed:
        raise SystemExit(f"lmm-env {command}: --env {env_id!r} is not allowed; use one of {', '.join(allowed)}")
    return env_id


def _pairs_arg(text):
    """``--pairs`` of eval and play: one K (0, 4, 16, 64 or all), or None when not given."""
    if text is None:
        return None
    return text if text == "all" else _int_arg(text, "--pairs")


def _int_arg(text, what):
    try:
        return int(text)
    except ValueError:
        raise SystemExit(f"lmm-env: {what} {text!r} is not allowed; use an int (or all)") from None


def _agent(name_or_path, env, seed=None, pairs=None, ear=None):
    """``--agent`` through the one registry (`lmm_env.agents.load_agent`). ``seed`` is also the env's:
    it goes to an agent that takes one; ``--pairs`` / ``--ear`` given to one that does not listen are refused."""
    from lmm_env.agents.registry import AGENTS, load_agent

    spec = AGENTS.get(name_or_path)
    takes_seed = ("seed" in spec.options) if spec is not None else name_or_path.lower().endswith(".safetensors")
    try:
        agent = load_agent(name_or_path, env, pairs=pairs, ear=ear, seed=seed if takes_seed else None)
    except ValueError as exc:
        if spec is None and takes_seed and "does not use seed" in str(exc):
            agent = load_agent(name_or_path, env, pairs=pairs, ear=ear)  # a policy that is not sampled
        else:
            raise SystemExit(f"lmm-env: --agent: {exc}")
    except FileNotFoundError as exc:
        raise SystemExit(f"lmm-env: --agent: {exc}")
    return agent


def cmd_agents(args) -> int:
    from lmm_env.agents.registry import agent_table

    print(agent_table(markdown=not args.long))
    return 0


def cmd_train(args) -> int:
    from lmm_env.agents.training.sb3 import train

    _task("train", args.env)

    model = train(env_id=args.env, algo=args.algo, total_steps=args.steps, n_envs=args.n_envs, seed=args.seed,
                  logdir=args.logdir, env_kwargs=_json_arg(args.env_kwargs, "--env-kwargs"),
                  hyperparams=_json_arg(args.hyperparams, "--hyperparams"), policy=args.policy,
                  eval_every=args.eval_every, eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every,
                  resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"trained {model.num_timesteps} steps; checkpoint: {os.path.join(args.logdir, 'checkpoints', 'last.safetensors')}")
    return 0


def cmd_eval(args) -> int:
    import lmm_env  # noqa: F401
    from lmm_env.agents.benchmark.evaluate import evaluate
    from lmm_env.agents.registry import AGENTS

    spec = AGENTS.get(args.agent)
    env_id = args.env
    if env_id is None:  # the agent's own task (its first), else LMMPiano-v0
        env_id = spec.tasks[0] if spec is not None else None
        if env_id is None and args.agent.lower().endswith(".safetensors") and os.path.isfile(args.agent):
            from lmm_env.agents.training.checkpoints import read_checkpoint

            try:
                env_id = read_checkpoint(args.agent)[0].get("env_id")
            except ValueError as exc:
                raise SystemExit(f"lmm-env eval: --agent: {exc}")
        env_id = env_id or "LMMPiano-v0"
    _task("eval", env_id)
    if spec is not None and env_id not in spec.tasks:
        raise SystemExit(f"lmm-env eval: agent {args.agent!r} does not play {env_id}; it plays {', '.join(spec.tasks)}")
    env_kwargs = _json_arg(args.env_kwargs, "--env-kwargs")
    options = {k: v for k, v in (("pairs", _pairs_arg(args.pairs)), ("ear", args.ear)) if v is not None}
    try:
        table = evaluate(args.agent, env_id, split=args.split, episodes=args.episodes, env_kwargs=env_kwargs,
                         seed=args.seed, progress=not args.no_progress, **options)
    except FileNotFoundError as exc:
        raise SystemExit(f"lmm-env eval: --agent: {exc}")
    print(table.table())
    print()
    print(table.markdown(os.path.basename(args.agent)))
    return 0


IMPROVISE = "LMMImprovise-v0"


def _play_task(args) -> str:
    """The env of ``play``: --env if given; else LMMImprovise-v0 with --prompt or an agent that only improvises."""
    if args.env:
        _task("play", args.env)
        if args.prompt is not None and args.env != IMPROVISE:
            raise SystemExit(f"lmm-env play: --prompt is for {IMPROVISE}, not --env {args.env}")
        return args.env
    if args.prompt is not None:
        return IMPROVISE
    from lmm_env.agents.registry import AGENTS

    spec = AGENTS.get(args.agent)
    if spec is not None and spec.tasks == (IMPROVISE,):
        raise SystemExit(f"lmm-env play: agent {args.agent!r} improvises ({IMPROVISE}); give --prompt (a MIDI file, "
                         "a corpus name such as folk, or none)")
    return "LMMPiano-v0"


def _improvise_env(args, env_kwargs):
    """LMMImprovise-v0 with --prompt (a MIDI file, a corpus name, or none); (env, output stem)."""
    import gymnasium as gym

    from lmm_env import corpus

    if args.midi is not None:
        raise SystemExit(f"lmm-env play: {IMPROVISE} takes its prompt from --prompt, not a MIDI argument "
                         f"({args.midi!r})")
    prompt = args.prompt if args.prompt is not None else "none"
    if "prompt" in env_kwargs:
        raise SystemExit("lmm-env play: give the prompt with --prompt, not in --env-kwargs")
    is_file = os.sep in prompt or prompt.lower().endswith((".mid", ".midi")) or os.path.exists(prompt)
    if prompt.lower() == "none":
        value, stem = None, "improvisation"
    elif is_file:
        if os.path.isdir(prompt):
            raise SystemExit(f"lmm-env play: --prompt: {prompt!r} is a directory, not a MIDI file")
        if not os.path.isfile(prompt):
            raise SystemExit(f"lmm-env play: --prompt: MIDI file {prompt!r} does not exist")
        if not prompt.lower().endswith((".mid", ".midi")):
            raise SystemExit(f"lmm-env play: --prompt: {prompt!r} is not a MIDI file (.mid or .midi)")
        value, stem = prompt, os.path.splitext(os.path.basename(prompt))[0]
    elif prompt in corpus.names():
        value, stem = prompt, prompt
    else:
        raise SystemExit(f"lmm-env play: --prompt {prompt!r} is neither a MIDI file nor a corpus name "
                         f"({', '.join(corpus.names())}) nor none")
    try:
        env = gym.make(IMPROVISE, prompt=value, **env_kwargs)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        # blame the prompt only when the error is about it (another argument is named by the error itself)
        about_prompt = "prompt" in str(exc) or (value is not None and str(value) in str(exc))
        blame = f"--prompt {prompt!r}: cannot be used as a prompt" if about_prompt else f"{IMPROVISE} cannot be made"
        raise SystemExit(f"lmm-env play: {blame}: {exc}")
    return env, stem


def _check_outputs(out, stem: str, video: bool) -> None:
    """``play``'s output folder and files, checked (and the folder made) before any work."""
    from lmm_env._checks import OutputPathError, writable_dir, writable_file

    try:
        folder = writable_dir(out, "--out")
        for suffix in ("_performance.mid", "_performance.wav", "_piano_roll.png") + (("_performance.mp4",) if video else ()):
            writable_file(folder / f"{stem}{suffix}", "--out")
    except OutputPathError as exc:
        raise SystemExit(f"lmm-env play: {exc}")


def cmd_play(args) -> int:
    import gymnasium as gym
    import numpy as np
    import soundfile as sf
    from tqdm import tqdm

    import lmm_env  # noqa: F401
    from lmm_env.agents.training.sb3 import roll_image

    env_kwargs = _json_arg(args.env_kwargs, "--env-kwargs")
    if env_kwargs.get("record_audio", True) is not True:
        raise SystemExit("lmm-env play: record_audio must stay on: play writes the audio the agent heard (WAV, MP4)")
    improvise = _play_task(args) == IMPROVISE
    if improvise:
        env, stem = _improvise_env(args, env_kwargs)
    else:
        if args.midi is None:
            raise SystemExit("lmm-env play: give a MIDI file to play (or --prompt for LMMImprovise-v0)")
        if not args.midi.lower().endswith((".mid", ".midi")):
            raise SystemExit(f"lmm-env play: {args.midi!r} is not a MIDI file (.mid or .midi): play reads a score and "
                             "plays it; LMMByEar-v0 hears recordings given as --env-kwargs '{\"target\": \"x.wav\"}' "
                             "(use its agents through lmm_env.agents.benchmark.evaluate)")
        if os.path.isdir(args.midi):
            raise SystemExit(f"lmm-env play: {args.midi!r} is a directory, not a MIDI file")
        if not os.path.isfile(args.midi):
            raise SystemExit(f"lmm-env: MIDI file {args.midi!r} does not exist")
        if "score" in env_kwargs:
            raise SystemExit("lmm-env play: the score to play is the MIDI argument, not score= in --env-kwargs")
        stem = os.path.splitext(os.path.basename(args.midi))[0]
        _check_outputs(args.out, stem, args.video)
        env = gym.make(args.env or "LMMPiano-v0", score=args.midi, **env_kwargs)
    _check_outputs(args.out, stem, args.video)  # before playing: a bad --out fails now, not after the episode
    agent = _agent(args.agent, env, seed=args.seed, pairs=_pairs_arg(args.pairs), ear=args.ear)
    obs, info = env.reset(seed=args.seed)
    from lmm_env.envs.render import render_frame

    frames = [render_frame(env.unwrapped.sim, 0)] if args.video else None
    with tqdm(total=info["n_steps"], desc="play", unit="step", disable=args.no_progress) as bar:
        while True:
            action, _ = agent.predict(obs, deterministic=True)
            if np.ndim(action) == 2:  # an SB3 model trained on a vector env answers in batches
                action = action[0]
            obs, _, terminated, truncated, info = env.step(action)
            if frames is not None:
                frames.append(render_frame(env.unwrapped.sim, 0))
            bar.update()
            if terminated or truncated:
                break
    u = env.unwrapped
    u.performance().write(os.path.join(args.out, f"{stem}_performance.mid"))
    audio = u.episode_audio()
    sf.write(os.path.join(args.out, f"{stem}_performance.wav"), audio / max(1.0, float(np.abs(audio).max())),
             u.sim.sample_rate)
    import matplotlib.pyplot as plt

    from lmm_env.agents.benchmark.evaluate import episode_rolls

    img = roll_image(*episode_rolls(env))
    plt.imsave(os.path.join(args.out, f"{stem}_piano_roll.png"), img)
    m = info["metrics"]
    if improvise:
        print(f"{stem}: judge NLL {m['judge_nll']:.3f}, pitch-class entropy {m['pitch_class_entropy']:.3f}, "
              f"{m['note_density']:.2f} notes/s, repetition {m['repetition']:.3f}, in key {m['in_key_share']:.3f}")
    else:
        matched = (f" ({m['matched_velocity_error']:.2f} against the velocities as loud as the loudness reference)"
                   if "matched_velocity_error" in m else "")
        print(f"{stem}: note F1 {m['note_f1']:.3f}, frame F1 {m['frame_f1']:.3f}, velocity error "
              f"{m['velocity_error']:.2f}{matched}")
    written = f"{args.out}/{stem}_performance.mid, {stem}_performance.wav, {stem}_piano_roll.png"
    if frames is not None:
        from lmm_env.envs.video import write_video

        write_video(frames, audio, u.sim.sample_rate, u.sim.frame_rate,
                    os.path.join(args.out, f"{stem}_performance.mp4"))
        written += f", {stem}_performance.mp4"
    print(f"wrote {written}")
    return 0


def cmd_bench(args) -> int:
    import gymnasium as gym
    import numpy as np

    import lmm_env  # noqa: F401
    from lmm_env.agents import ScoreReaderAgent

    # the score reader plays the steps: tasks with a score to read
    _task("bench", args.env, ("LMMPiano-v0", "LMMDecipher-v0"))
    for name, value in (("--steps", args.steps), ("--num-envs", args.num_envs)):
        if value < 1:
            raise SystemExit(f"lmm-env bench: {name} {value} is not allowed; use an int >= 1")

    def per_step(env, steps):
        agent = ScoreReaderAgent(env)
        obs, _ = env.reset(seed=0)
        actions = []
        for _ in range(steps):
            a, _ = agent.predict(obs)
            actions.append(a)
            obs, _, term, trunc, _ = env.step(a)
            if np.ndim(term) == 0 and (term or trunc):  # vector envs reset themselves
                obs, _ = env.reset()
        env.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if np.ndim(term) == 0 and (term or trunc):
                env.reset()
        return (time.perf_counter() - t0) / steps

    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        _, _, term, trunc, _ = cart.step(cart.action_space.sample())
        if term or trunc:
            cart.reset()
    t_cart = (time.perf_counter() - t0) / args.steps
    print(f"| env | reward | us per env-step | x CartPole-v1 ({t_cart * 1e6:.1f} us) |")
    print("|---|---|---|---|")
    for reward in args.rewards.split(","):
        t = per_step(gym.make(args.env, reward=reward), args.steps)
        print(f"| {args.env} | {reward} | {t * 1e6:.1f} | {t / t_cart:.1f} |")
        v = gym.make_vec(args.env, num_envs=args.num_envs, reward=reward)
        tv = per_step(v, max(10, args.steps // args.num_envs)) / args.num_envs
        print(f"| {args.env} x {args.num_envs} (batched) | {reward} | {tv * 1e6:.1f} | {tv / t_cart:.1f} |")
    return 0


def cmd_warm(args) -> int:
    from lmm_env import corpus

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    result = corpus.warm(args.corpus, splits, workers=args.workers, progress=not args.no_progress)
    print(f"{args.corpus} ({'/'.join(splits)}): {result['pieces']} pieces, {result['cached']} were cached, "
          f"{result['converted']} converted now ({result['bad']} bad); cache: {corpus.cache_dir()}")
    return 0


def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt (as SIGINT does), so a stopped run ends in one line, not a traceback."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. main() called from a worker): keep the default
        pass


def cmd_benchmark(args) -> int:
    from lmm_env.agents.benchmark import runner as benchmark

    # the command that reproduces the table (--resume / --overwrite say how to write it, not what it is)
    command = ("lmm-env benchmark --agent " + args.agent
               + (f" --tier {args.tier}" if args.tier != "toy" else "") + (f" --score {args.score}" if args.score else "")
               + (f" --tasks {args.tasks}" if args.tasks else "") + (f" --pairs {args.pairs}" if args.pairs else "")
               + (f" --synth {args.synth}" if args.synth else "")
               + ("" if args.quick else f" --episodes {args.episodes}") + (" --quick" if args.quick else "")
               + (f" --train {args.train} --steps {args.steps}" if args.train else "")
               + (f" --seed {args.seed}" if args.seed else "") + f" --out {args.out}")
    try:
        benchmark.resolve(args.agent, args.tasks, args.pairs, args.synth, args.episodes, args.quick, args.train,
                          args.steps, args.seed, args.tier, args.score)
    except ValueError as exc:
        raise SystemExit(f"lmm-env benchmark: {exc}")
    _terminate_as_interrupt()
    try:
        rows = benchmark.run(args.agent, tasks=args.tasks, pairs=args.pairs, synths=args.synth, episodes=args.episodes,
                             quick=args.quick, out=args.out, train_algo=args.train, train_steps=args.steps,
                             seed=args.seed, progress=not args.no_progress, command=command, resume=args.resume,
                             overwrite=args.overwrite, tier=args.tier, score=args.score)
    except benchmark.BenchmarkArgumentError as exc:
        raise SystemExit(f"lmm-env benchmark: {exc}")
    except KeyboardInterrupt:
        try:
            done = benchmark.read_results(args.out)["rows"]
            saved = f"{sum(r.get('kind') != 'corpus' for r in done)} finished rows are in {args.out}/results.json"
        except ValueError:
            saved = "no row had finished"
        print(f"\nlmm-env benchmark: stopped; {saved} (marked partial). Continue with the same command and --resume.",
              file=sys.stderr)
        return 130
    print(benchmark.markdown_table(rows))
    print(f"wrote {os.path.join(args.out, 'results.md')}, results.csv, results.json, summary.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmm-env", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an SB3 agent (TensorBoard logs and checkpoints in --logdir)",
                       description="Train PPO/A2C/SAC on a batched LMMPiano env. Logs SB3 scalars, every reward "
                                   "term, evaluation metrics, audio and piano rolls to TensorBoard in --logdir; "
                                   "saves --logdir/checkpoints/last.safetensors periodically and at the end.")
    t.add_argument("--env", default="LMMPiano-v0")
    t.add_argument("--algo", default="ppo", help="ppo, a2c or sac")
    t.add_argument("--policy", default="MultiInputPolicy", help="MultiInputPolicy, KeyConvPolicy (PPO, A2C, SAC) or KeyLevelPolicy (SAC: per-key categorical actions)")
    t.add_argument("--steps", type=int, default=100_000, help="total env steps")
    t.add_argument("--n-envs", type=int, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--logdir", default="runs/lmm", help="TensorBoard logs and checkpoints go here")
    t.add_argument("--env-kwargs", default="{}", help='JSON, e.g. \'{"score": "folk", "max_seconds": 20}\'')
    t.add_argument("--hyperparams", default="{}", help='JSON of SB3 arguments, e.g. \'{"n_steps": 256}\'')
    t.add_argument("--eval-every", type=int, default=20_000, help="env steps between evaluations (0: never)")
    t.add_argument("--eval-episodes", type=int, default=4)
    t.add_argument("--checkpoint-every", type=int, default=20_000, help="env steps between checkpoints")
    t.add_argument("--resume", action="store_true", help="continue from --logdir's last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="start again in a --logdir that holds a run")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate an agent on held-out scores and print a metrics table",
                       description="Play --episodes held-out scores (the first of --split, in order) and print "
                                   "frame F1, note F1, velocity error, diversity and every reward term's return.")
    e.add_argument("--agent", default="score-reader",
                   help="a registered agent (lmm-env agents lists them) or a .safetensors checkpoint")
    e.add_argument("--env", default=None, help="the task (default: the agent's own; LMMPiano-v0 for a baseline of "
                                               "every task)")
    e.add_argument("--pairs", default=None, help="K: the reward's ear and, for an agent that listens, its ear "
                                                 "(0, 4, 16, 64, all)")
    e.add_argument("--ear", default=None, help="a saved ear (.safetensors) for an agent that listens")
    e.add_argument("--seed", type=int, default=0, help="env seed of episode i is seed + i; the agent's seed")
    e.add_argument("--split", default="test")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--env-kwargs", default="{}", help="JSON of env arguments")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_eval)

    pl = sub.add_parser("play", help="play a MIDI file with an agent; write MIDI, WAV and a piano-roll PNG",
                        description="Play MIDI with --agent in LMMPiano-v0 and write <name>_performance.mid, "
                                    "<name>_performance.wav and <name>_piano_roll.png (target over played) to --out. "
                                    "With --prompt (LMMImprovise-v0): the world plays the prompt, then the agent "
                                    "improvises, e.g. lmm-env play --agent ppo-improvise --prompt tune.mid --out out/")
    pl.add_argument("midi", nargs="?", default=None, help="a MIDI file to play (LMMPiano-v0 and other score tasks)")
    pl.add_argument("--agent", default="score-reader",
                    help="random, score-reader, ppo-closed-loop, ppo-improvise, another agent of lmm_env.agents.registry, "
                         "or a .safetensors checkpoint")
    pl.add_argument("--prompt", default=None,
                    help="LMMImprovise-v0's prompt: a MIDI file, a corpus name (e.g. folk: a piece drawn with --seed) "
                         "or none; implies --env LMMImprovise-v0")
    pl.add_argument("--out", default="out")
    pl.add_argument("--env", default=None, help="LMMPiano-v0 (default), or LMMImprovise-v0 with --prompt")
    pl.add_argument("--env-kwargs", default="{}", help="JSON of env arguments (e.g. synth)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--pairs", default=None, help="K of the ear of an agent that listens (0, 4, 16, 64, all)")
    pl.add_argument("--ear", default=None, help="a saved ear (.safetensors) for an agent that listens")
    pl.add_argument("--no-progress", action="store_true")
    pl.add_argument("--video", action="store_true",
                    help="also write an MP4 of the keyboard and piano roll with the audio the agent heard")
    pl.set_defaults(func=cmd_play)

    a = sub.add_parser("agents", help="every registered agent: tasks, options, what it learned from, how to retrain it",
                       description="The agent registry (lmm_env.agents.registry.AGENTS): the names --agent takes.")
    a.add_argument("--markdown", action="store_true", help="a markdown table (the default; kept for scripts)")
    a.add_argument("--long", action="store_true", help="one block per agent, with its description")
    a.set_defaults(func=cmd_agents)

    d = sub.add_parser("doctor", help="what this installation can do (packages, synths, models, threads)",
                       description="Check every package, synth and shipped model lmm_env uses, and say what to do "
                                   "about anything missing. Exit status 1 if a default path does not work.")
    d.set_defaults(func=lambda args: __import__("lmm_env.doctor", fromlist=["main"]).main())

    b = sub.add_parser("bench", help="time env steps (per reward) against CartPole-v1",
                       description="Time single and batched env steps with ScoreReaderAgent actions, per reward, "
                                   "against CartPole-v1 in the same run. bench/*.py hold the full benchmarks.")
    b.add_argument("--env", default="LMMPiano-v0")
    b.add_argument("--rewards", default="key_match,closed_loop", help="comma-separated reward names")
    b.add_argument("--steps", type=int, default=1000)
    b.add_argument("--num-envs", type=int, default=64)
    b.set_defaults(func=cmd_bench)

    w = sub.add_parser("warm", help="convert a corpus into the disk cache now, on every core (a fresh machine)",
                       description="Convert every piece of a real corpus with music21 into lmm_env's disk cache "
                                   "($LMM_ENV_CACHE or the user cache dir), in parallel. Otherwise a fresh machine "
                                   "converts each piece when an episode first draws it (~0.04 s a folk tune).")
    w.add_argument("corpus", help="folk, bach-chorales, essen, oneills or ryans")
    w.add_argument("--split", default="train,validation,test", help="comma-separated splits")
    w.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_warm)

    m = sub.add_parser("benchmark", help="every agent on every task under the fixed protocol; a results table",
                       description="Play the agents on the four tasks (LMMPiano-v0, LMMDecipher-v0, LMMByEar-v0, "
                                   "LMMImprovise-v0) for each K (--pairs) and instrument (--synth) under a fixed "
                                   "protocol (test split, pieces 0..N-1, fixed lengths; see "
                                   "lmm_env.agents.benchmark.runner), print the markdown table and write results.md, "
                                   "results.csv, results.json and summary.png to --out.")
    m.add_argument("--agent", default="baselines",
                   help="comma-separated agent names (lmm_env.agents.registry: random, score-reader, ppo-closed-loop, "
                        "babble, reference-oracle, gradient, repeat-prompt, lm-sampler, ppo-improvise), 'baselines' (all of "
                        "them) or .safetensors checkpoints")
    m.add_argument("--tasks", default=None, help="comma-separated task ids (default: every task the agents play)")
    m.add_argument("--tier", default="toy", choices=("toy", "real"),
                   help="toy: folk on the built-in piano, K 0; real: two-hand piano music on the sampled grand and "
                        "TimGM6mb, K 0,4,16,64 (the defaults of --score, --synth, --pairs)")
    m.add_argument("--score", default=None, help="the corpus every row plays (default: the tier's: folk or piano)")
    m.add_argument("--pairs", default=None, help="comma-separated K of the reward's ear: 0, 4, 16, 64, all "
                                                 "(default: the tier's)")
    m.add_argument("--synth", default=None,
                   help="comma-separated instruments: piano, grand, soundfont or .sf2/.sf3 paths, each optionally "
                        "@studio, @living-room, @hall or @church (LMMByEar-v0: the target's; default: the tier's)")
    m.add_argument("--episodes", type=int, default=10, help="pieces per row (the first of the test split)")
    m.add_argument("--quick", action="store_true", help="2 episodes of 8 s, the first K only")
    m.add_argument("--train", default=None, metavar="ALGO", help="also train ALGO (ppo, a2c, sac) on each task's "
                                                                   "train split and add it as <ALGO>-trained")
    m.add_argument("--steps", type=int, default=0, help="env steps of --train per (task, K, synth)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", default="out/benchmark", help="folder for results.md/.csv/.json and summary.png "
                                                          "(each row is written as it finishes)")
    m.add_argument("--resume", action="store_true",
                   help="continue the run in --out: keep its finished rows, play the missing ones (same protocol only)")
    m.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    m.add_argument("--no-progress", action="store_true")
    m.set_defaults(func=cmd_benchmark)
    return p


def main(argv=None) -> int:
    import gymnasium

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, str):  # a user error raised with its message: one line, status 2 (as argparse's)
            print(exc.code, file=sys.stderr)
            return 2
        raise
    except BrokenPipeError:  # `lmm-env agents | head`: the reader left; nothing is wrong
        sys.stderr.close()
        return 0
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError, MemoryError,
            gymnasium.error.Error) as exc:
        # a user-facing failure: the message names the bad value and what is allowed; the
        # traceback of lmm_env's internals only hides it (LMM_ENV_TRACEBACK=1 shows it)
        if os.environ.get("LMM_ENV_TRACEBACK"):
            raise
        print(f"lmm-env {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
