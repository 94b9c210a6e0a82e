"""Training back-ends.

- `sb3`: Stable-Baselines3 training (PPO, A2C, SAC) with presets (`hyperparams/`) and TensorBoard;
  what ``lmm-env train`` and ``lmm_env.agents.train`` run.
- `checkpoints`: the safetensors checkpoints they write, read back without running code.
- `sac`: discrete SAC with per-key categorical actions (``algo="sac"``).
- `rllib`: Ray RLlib (new API stack) on every task.
- `diff_train`: training g and h through the differentiable piano (the shipped diff-g / diff-h).
- `improvise`: the run that trained the shipped ``ppo-improvise``.
"""
