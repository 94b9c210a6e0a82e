"""Agents that do not learn: random play, oracles, the score reader, and each task's floor.

- `simple`: `RandomAgent`, `ScoreReaderAgent` (an oracle on the hidden keyboard), `WrongPlayAgent`.
- `decipher`: `BabbleAgent` (LMMDecipher-v0's floor: press each key alone, listen, read the score).
- `by_ear`: `ReferenceOracle` and `ByEarGradientAgent` (LMMByEar-v0).
- `gradient`: `GradientAgent`, analysis by synthesis through the differentiable piano.
- `improvise`: `RepeatPromptAgent`, `ScoreLMSamplerAgent`, `PolicySamplerAgent` (LMMImprovise-v0).
- `pairs_only`: methods that learn from the K score-audio pairs alone (`EarReaderAgent`, supervised g).
"""
from lmm_env.agents.baselines.simple import RandomAgent, ScoreReaderAgent, WrongPlayAgent

__all__ = ["RandomAgent", "ScoreReaderAgent", "WrongPlayAgent"]
