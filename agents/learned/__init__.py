"""Learned agents, one module each (the policy and how it plays).

- `differentiable`: ``diff-g`` and ``diff-h``, mappings learned through the differentiable piano.
- `decipher`: ``decipher-closed-loop``, learns the hidden keyboard from its own strikes.
- `world_transcriber`: ``world-transcriber``, h as a note transcriber pretrained on the world's
  pianos and adapted on the K pairs of the target's instrument (`lmm_env.lm.transcriber`).
- `listening`: ``listening-g``, g for two-hand music that learns by ear, while it plays, how
  hard to strike the world's instrument (`LoudnessListener`).
- `improviser`: ``motion-lm``, an improviser that reads its prompt and plays the motion LM's
  (LM^M, `lmm_env.lm.motion_lm`) continuation of it.
- `policies`: `KeyConvPolicy`, the SB3 policy of the shipped ``ppo-closed-loop`` and ``ppo-improvise``.

How each was trained: `lmm_env.agents.registry.AGENTS[name].retrain` (``lmm-env agents``).
"""
