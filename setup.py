"""Install lmm_env: the core package plus envs/ and agents/ as lmm_env.envs and lmm_env.agents."""
from setuptools import setup

setup(
    name="lmm_env",
    version="0.1.0",
    description="A piano as a reinforcement-learning world for Language Model Mapping (LMM) in multimodal music learning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # envs/ and agents/ live at the top of the repo (as the layout asks) but install under
    # lmm_env, so that no generic top-level names (`envs`, `agents`) land in site-packages.
    packages=["lmm_env", "lmm_env.synth", "lmm_env.rewards", "lmm_env.lm", "lmm_env.judges", "lmm_env.envs",
              "lmm_env.agents",
              "lmm_env.agents.baselines", "lmm_env.agents.learned", "lmm_env.agents.training",
              "lmm_env.agents.benchmark"],
    package_dir={"lmm_env.envs": "envs", "lmm_env.agents": "agents"},
    # The shipped LM and ear weights (safetensors + JSON config, a few MB in all).
    # ... and the sampled grand piano (synth="grand": samples, zones, licence, provenance; ~4.5 MB).
    package_data={"lmm_env.lm": ["weights/*.safetensors", "weights/*.json"],
                  "lmm_env.judges": ["weights/*.safetensors", "weights/*.json"],
                  "lmm_env.synth": ["grand/*"],
                  "lmm_env.agents": ["weights/*.safetensors", "weights/*.json"],
                  "lmm_env.agents.training": ["hyperparams/*.yml"]},
    install_requires=[
        # torch is pinned by the Makefile first (a CPU build); any torch >= 2.1 works.
        "torch>=2.1",
        "gymnasium>=1.0",
        "stable-baselines3>=2.3",
        "numpy>=1.24",
        "scipy>=1.10",
        "pretty_midi>=0.2.10",
        "tensorboard>=2.10",
        "music21>=9.1",
        "soundfile>=0.12",
        "matplotlib>=3.6",
        "mir_eval>=0.7",
        "librosa>=0.10",
        "platformdirs>=3",
        "tqdm>=4.60",
        "rich>=12",  # Stable-Baselines3's progress bar
        "safetensors>=0.4",
        "threadpoolctl>=3",
        "pyyaml>=5.1",
        "imageio-ffmpeg>=0.4",  # a bundled ffmpeg for videos with sound (no system package)
        "numba>=0.57",  # the synth's voice loop (librosa needs it too)
        # tinysoundfont (the SoundFont instrument) is installed by the Makefile with
        # --no-deps: its wheel declares pyaudio, which needs the system PortAudio library,
        # and lmm_env never plays audio in real time.
    ],
    # rl_zoo3 is only needed to run the zoo's own train script on our env (tested).
    # rllib: Ray RLlib's new API stack (lmm_env.agents.training.rllib, examples/rllib_ppo.py); Ray pins its
    # own gymnasium, which lmm_env supports (>= 1.0).
    extras_require={"test": ["pytest>=7", "scikit-learn>=1.2", "rl_zoo3>=2.3", "hypothesis>=6", "moviepy>=1.0"],
                    "rllib": ["ray[rllib]>=2.40"],
                    # docs: the API reference (`make docs`, mkdocs + mkdocstrings, built from docstrings)
                    "docs": ["mkdocs>=1.6", "mkdocstrings[python]>=0.26"],
                    # datasets: episodes recorded as Minari datasets (lmm_env.agents.datasets)
                    "datasets": ["minari[create,arrow]>=0.5"],
                    # video: gymnasium.wrappers.RecordVideo (silent) needs moviepy; lmm_env's own video
                    # writer (lmm_env.envs.video, with sound) does not
                    "video": ["moviepy>=1.0"],
                    # judges: reward LMs from the field (lmm_env.judges: MusicGen, causal LMs over miditok
                    # tokens). Not torchaudio: it does not import beside torch 2.13.
                    "judges": ["transformers>=4.45", "miditok>=3.0"]},
    entry_points={"console_scripts": ["lmm-env=lmm_env.agents.cli:main"]},
)
