"""Does the improvise reward make collapse unprofitable? Scripted 15 s performances, no prompt.

    python bench/probe_improvise_reward.py

Plays real test pieces (folk 0-2, Bach 0), a random walk, random pitches, a 4-note loop, one
repeated note and silence through LMMImprovise-v0 and prints each return, its reward terms,
and the judge NLL and note density of what was played (results in BENCHMARKS.md).
"""
import gymnasium as gym, lmm_env, numpy as np, sys
from lmm_env import corpus
from lmm_env.score import Score
env = gym.make("LMMImprovise-v0", prompt=None, length_seconds=15)
def play(roll_held, roll_vel):
    obs, info = env.reset(seed=0)
    done=False; t=0; terms={}; R=0
    prev=np.zeros(88,bool)
    while not done:
        h = roll_held[t] if t < len(roll_held) else np.zeros(88,bool)
        a = np.where(h, np.maximum((roll_vel[t]-1)/126,1e-4) if t < len(roll_held) else 0, -1).astype(np.float32)
        obs, r, te, tr, info = env.step(a); R+=r; done = te or tr; t+=1
        for k,v in info["reward_terms"].items(): terms[k]=terms.get(k,0)+v
    return R, terms, info["metrics"]
rng=np.random.default_rng(0)
cases={}
for i in range(3):
    s = corpus.load("folk","test")[i].trim(0,15); f=s.frames(20); cases[f"folk{i}"]=(f.held, f.velocity)
s = corpus.load("bach-chorales","test")[0].trim(0,15); f=s.frames(20); cases["bach0"]=(f.held,f.velocity)
one = Score.from_notes([(60, 0.25*i, 0.25*i+0.2, 80) for i in range(60)]); f=one.frames(20); cases["one-note"]=(f.held,f.velocity)
loop = Score.from_notes([(p, 0.25*i, 0.25*i+0.2, 80) for i,p in enumerate([60,64,67,72]*15)]); f=loop.frames(20); cases["loop4"]=(f.held,f.velocity)
rw = np.cumsum(rng.choice([-2,-1,1,2],60))+60
walk = Score.from_notes([(int(p), 0.25*i, 0.25*i+0.2, 80) for i,p in enumerate(rw)]); f=walk.frames(20); cases["random-walk"]=(f.held,f.velocity)
rnd = Score.from_notes([(int(p), 0.25*i, 0.25*i+0.2, 80) for i,p in enumerate(rng.integers(40,90,60))]); f=rnd.frames(20); cases["random-notes"]=(f.held,f.velocity)
cases["silence"]=(np.zeros((1,88),bool), np.zeros((1,88)))
for k,(h,v) in cases.items():
    R,terms,m=play(h,v)
    print(f"{k:14s} R={R:6.2f}", {a: round(b,1) for a,b in terms.items() if a!='improvise'}, "judge", round(m['judge_nll'],2), "nd", round(m['note_density'],2))
