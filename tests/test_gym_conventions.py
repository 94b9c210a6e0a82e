"""Gymnasium 1.x conventions: every vector twin declares the autoreset mode it implements, and
gymnasium's RecordVideo records every task."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import lmm_env

# short episodes: 1 s of score (plus the 0.5 s tail) or 0.5 s prompt + 0.5 s of free play
SHORT = {"LMMPiano-v0": {"max_seconds": 1.0}, "LMMDecipher-v0": {"max_seconds": 1.0},
         "LMMByEar-v0": {"max_seconds": 1.0}, "LMMImprovise-v0": {"prompt_seconds": 0.5, "length_seconds": 0.5}}
# every vector twin: each task's vector entry point, and LMMPiano-v0's torch world (CPU)
TWINS = [(task, {}) for task in lmm_env.TASK_IDS] + [("LMMPiano-v0", {"backend": "torch", "as_numpy": True})]
TWIN_IDS = [task + ("-torch" if extra else "") for task, extra in TWINS]


def test_short_kwargs_cover_every_task():
    assert set(SHORT) == set(lmm_env.TASK_IDS)


def _make_vec(task, extra, num_envs=2):
    return gym.make_vec(task, num_envs=num_envs, vectorization_mode="vector_entry_point", **SHORT[task], **extra)


@pytest.mark.parametrize("task,extra", TWINS, ids=TWIN_IDS)
def test_vector_twin_declares_same_step_autoreset(task, extra):
    venv = _make_vec(task, extra)
    try:
        mode = venv.metadata.get("autoreset_mode")
        assert isinstance(mode, AutoresetMode), f"{type(venv).__name__} declares autoreset_mode={mode!r}"
        assert mode is AutoresetMode.SAME_STEP
        # the class declares it too (what tools read before making one)
        assert type(venv).metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    finally:
        venv.close()


def _assert_obs_equal(a: dict, b: dict, what: str):
    assert set(a) == set(b), what
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=1e-4, err_msg=f"{what}: obs[{k!r}]")


@pytest.mark.parametrize("task,extra", TWINS, ids=TWIN_IDS)
def test_vector_twin_behaves_as_same_step(task, extra):
    """Step a vector twin beside single envs seeded alike, with the same actions: on the step an
    episode ends, the twin returns the *next* episode's first observation (what a single env's
    next reset gives), the ended episode's last one is in ``info["final_obs"]``, and no reset
    step follows (SAME_STEP; NEXT_STEP would return the last observation and reset on the next
    step)."""
    n = 2
    venv = _make_vec(task, extra, n)
    singles = [gym.make(task, **SHORT[task]) for _ in range(n)]
    try:
        vobs, _ = venv.reset(seed=3)
        sobs = [e.reset(seed=3 + i)[0] for i, e in enumerate(singles)]
        rng = np.random.default_rng(0)
        ended = None
        for step in range(400):
            for i in range(n):
                _assert_obs_equal({k: v[i] for k, v in vobs.items()}, sobs[i], f"env {i} at step {step}")
            actions = rng.uniform(-1, 1, (n,) + venv.single_action_space.shape).astype(np.float32)
            actions[:, 12:] = -1.0  # a few keys only: a sparse, audible performance
            vobs, vrew, vterm, vtrunc, vinfo = venv.step(actions)
            res = [e.step(actions[i]) for i, e in enumerate(singles)]
            np.testing.assert_allclose(np.asarray(vrew, np.float64), [r[1] for r in res], atol=1e-4)
            assert [bool(t) for t in vtrunc] == [r[3] for r in res]
            if np.any(vtrunc):
                ended = np.flatnonzero(vtrunc)
                break
            sobs = [r[0] for r in res]
        assert ended is not None, "no episode ended within 400 steps"
        assert np.array_equal(vinfo["_final_obs"], np.asarray(vtrunc, bool))
        for i in ended:
            final, first = res[i][0], singles[i].reset()[0]
            # final_obs is the ended episode's last observation ...
            _assert_obs_equal(vinfo["final_obs"][i], final, f"final_obs of env {i}")
            # ... and the observation returned this step is the next episode's first
            returned = {k: v[i] for k, v in vobs.items()}
            _assert_obs_equal(returned, first, f"env {i}'s observation on its last step")
            assert any(not np.allclose(np.asarray(returned[k]), np.asarray(final[k])) for k in final), \
                "the next episode's first observation equals the last one: the check cannot tell the modes apart"
            assert vinfo["_metrics"][i]
        # the next step is already the new episode's first step (no reset step in between)
        actions = np.full((n,) + venv.single_action_space.shape, -1.0, np.float32)
        _, vrew, _, vtrunc, _ = venv.step(actions)
        for i in ended:
            _, r, _, t, _ = singles[i].step(actions[i])
            assert abs(float(vrew[i]) - r) < 1e-4 and bool(vtrunc[i]) == t
    finally:
        venv.close()
        for e in singles:
            e.close()


# --- gymnasium.wrappers.RecordVideo on every task ---------------------------------------------

@pytest.mark.parametrize("task", lmm_env.TASK_IDS)
def test_rgb_array_frames_are_video_frames(task):
    env = gym.make(task, render_mode="rgb_array", **SHORT[task])
    try:
        assert env.metadata["render_fps"] == env.unwrapped.sim.frame_rate
        assert "rgb_array" in env.metadata["render_modes"]
        env.reset(seed=0)
        frames = [env.render()]
        env.step(env.action_space.sample())
        frames.append(env.render())
        for f in frames:
            assert isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
            assert f.shape[0] % 2 == 0 and f.shape[1] % 2 == 0  # H.264 (yuv420p) needs even sizes
        assert frames[0].shape == frames[1].shape
    finally:
        env.close()


@pytest.mark.parametrize("task", lmm_env.TASK_IDS)
def test_record_video_writes_an_mp4(task, tmp_path):
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo writes with moviepy, which is not installed "
                                          "(pip install moviepy)")
    from gymnasium.wrappers import RecordVideo

    from lmm_env.envs.video import streams

    folder = tmp_path / "videos"
    env = RecordVideo(gym.make(task, render_mode="rgb_array", **SHORT[task]), video_folder=str(folder),
                      episode_trigger=lambda e: True, disable_logger=True)
    try:
        assert env.frames_per_sec == env.unwrapped.sim.frame_rate
        env.reset(seed=0)
        steps = 0
        while True:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
            if terminated or truncated:
                break
    finally:
        env.close()  # RecordVideo writes the episode's video here (or at the next reset)
    videos = sorted(folder.glob("*.mp4"))
    assert [v.name for v in videos] == ["rl-video-episode-0.mp4"]
    assert videos[0].stat().st_size > 0
    # one frame at reset and one per step, at the env's frame rate
    seconds = streams(videos[0])["video"]
    assert seconds == pytest.approx((steps + 1) / env.unwrapped.sim.frame_rate, abs=0.1)


def test_record_video_follows_the_frame_rate(tmp_path):
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo writes with moviepy, which is not installed")
    from gymnasium.wrappers import RecordVideo

    env = RecordVideo(gym.make("LMMPiano-v0", render_mode="rgb_array", frame_rate=10, reward="key_match",
                               max_seconds=1.0), video_folder=str(tmp_path / "v"), disable_logger=True)
    try:
        assert env.frames_per_sec == 10
    finally:
        env.close()
