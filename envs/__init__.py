"""Gymnasium envs of lmm_env (installed as ``lmm_env.envs``)."""
from lmm_env.envs.piano import LMMPianoEnv
from lmm_env.envs.piano_vector import LMMPianoVectorEnv
from lmm_env.envs.sb3 import SB3VecEnv, make_sb3_vec_env
from lmm_env.envs.torch_vector import LMMPianoTorchVectorEnv, make_vector_env
from lmm_env.envs.video import RecordEpisodeVideo, write_video

__all__ = ["LMMPianoEnv", "LMMPianoVectorEnv", "LMMPianoTorchVectorEnv", "make_vector_env", "SB3VecEnv",
           "make_sb3_vec_env", "RecordEpisodeVideo", "write_video"]
