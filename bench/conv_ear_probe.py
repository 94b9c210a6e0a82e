"""Probe for issue 24 (h on an unseen piano): a small conv transcriber learned from the world's own piano.

    .venv/bin/python bench/conv_ear_probe.py --steps 3000 --ft-steps 1500     # ~35 min on 2 cores

Hypothesis: the agent can make unlimited pairs of its *own* world (the built-in piano renders any
score it plays), so a transcriber pretrained on them needs only the K pairs of the target's
instrument to adapt. The script (1) trains a 15k-parameter harmonic-stacked conv net (onset,
frame and velocity per key at 100 fps, on a 3-bins-a-semitone log spectrum) on random 2 s
windows of train-split folk, Bach and `piano` pieces rendered by the built-in piano (random
transposition, velocity scale, gain), (2) fine-tunes a copy on the K = 16 protocol pairs of each
target instrument (half its batches still from the world), and (3) scores its transcriptions
(onset peaks, sub-frame onsets) on the `piano` **validation** split, 10 pieces x 20 s, rendered
by that instrument with the pedal, against the sounding notes (mir_eval, 50 ms). Nothing here is
shipped; BENCHMARKS.md quotes the result.
"""
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmm_env import corpus
from lmm_env import pairs as pairs_mod
from lmm_env.metrics import note_metrics, playable_notes
from lmm_env.score import Score
from lmm_env.synth import make_synth

torch.set_num_threads(1)

SR, NFFT, HOP, BPS = 16000, 2048, 160, 3
FPS = SR / HOP
LO = 21
NB = 88 * BPS
# log-frequency map: BPS bins a semitone over the 88 keys, triangular weights over the FFT bins
freqs = np.arange(NFFT // 2 + 1) * SR / NFFT
centers = 440 * 2 ** ((LO + (np.arange(NB) - (BPS - 1) / 2) / BPS - 69) / 12)
W = np.zeros((NB, len(freqs)), np.float32)
for b, c in enumerate(centers):
    lo, hi = c * 2 ** (-1 / (12 * BPS)), c * 2 ** (1 / (12 * BPS))
    w = np.clip(1 - np.abs(np.log2(np.maximum(freqs, 1e-3) / c)) * 12 * BPS, 0, None)
    if w.sum() == 0:
        w[np.argmin(np.abs(freqs - c))] = 1
    W[b] = w / w.sum()
W = torch.from_numpy(W)
WIN = torch.hann_window(NFFT)
HARM = [0] + [int(round(12 * BPS * math.log2(h))) for h in (2, 3, 4, 5)]

def features(audio):  # (B, n) -> (B, 5, T, NB)
    x = torch.as_tensor(audio, dtype=torch.float32)
    S = torch.stft(x, NFFT, HOP, window=WIN, center=True, return_complex=True).abs()  # B, F, T
    L = torch.einsum("nf,bft->btn", W, S)
    L = torch.log1p(100 * L / (L.amax(dim=(1, 2), keepdim=True) + 1e-6))
    L = (L - L.mean(dim=(1, 2), keepdim=True)) / (L.std(dim=(1, 2), keepdim=True) + 1e-5)
    chans = [F.pad(L[..., h:], (0, h)) for h in HARM]
    return torch.stack(chans, 1)

class Net(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.c1 = nn.Conv2d(5, c, (3, 3), padding=(1, 1))
        self.c2 = nn.Conv2d(c, c, (3, 3), padding=(1, 1))
        self.c3 = nn.Conv2d(c, c, (1, BPS), stride=(1, BPS))  # -> 88 keys
        self.t1 = nn.Conv2d(c, 2 * c, (7, 1), padding=(3, 0))
        self.t2 = nn.Conv2d(2 * c, c, (5, 3), padding=(2, 1))
        self.head = nn.Conv2d(c, 3, 1)
    def forward(self, f):
        h = F.relu(self.c1(f)); h = F.relu(self.c2(h)); h = F.relu(self.c3(h))
        h = F.relu(self.t1(h)); h = F.relu(self.t2(h))
        o = self.head(h)  # B, 3, T, 88
        return o[:, 0], o[:, 1], o[:, 2]

def labels(score, T):
    on = np.zeros((T, 88), np.float32); fr = np.zeros((T, 88), np.float32); vel = np.zeros((T, 88), np.float32)
    s = score.sustained()
    for p, a, b, v in zip(s.pitches, s.onsets, s.offsets, s.velocities):
        k = int(p) - LO
        if not 0 <= k < 88: continue
        i = int(round(a * FPS)); j = max(i + 1, int(round(b * FPS)))
        if i < T:
            on[i, k] = 1; vel[i, k] = v / 127
            fr[i:min(j, T), k] = 1
    return on, fr, vel

def window_from_score(piece, synth, seconds, rng, transpose=0, vscale=1.0):
    start = rng.uniform(0, max(0.0, piece.duration - seconds))
    s = piece.trim(start, start + seconds + 0.5) if piece.duration > seconds else piece
    if transpose or vscale != 1.0:
        p = np.clip(s.pitches + transpose, 21, 108)
        v = np.clip(np.round(s.velocities * vscale), 1, 127)
        s = Score(p, s.onsets, s.offsets, v, pedal=s.pedal)
    a = synth.render(s, tail=0.5)
    n = int(seconds * SR)
    a = np.pad(a[:n], (0, max(0, n - len(a))))
    return a, s

def batch_world(pool, synth, B, seconds, rng):
    A, Ls = [], []
    T = int(seconds * SR) // HOP + 1
    for _ in range(B):
        piece = pool[rng.integers(len(pool))]
        a, s = window_from_score(piece, synth, seconds, rng, transpose=int(rng.integers(-5, 6)), vscale=rng.uniform(0.6, 1.3))
        a = a * 10 ** (rng.uniform(-12, 6) / 20) + rng.normal(0, 1e-4, len(a))
        A.append(a.astype(np.float32)); Ls.append(labels(s, T))
    return np.stack(A), [np.stack(x) for x in zip(*Ls)]

def batch_pairs(prs, B, seconds, rng):
    A, Ls = [], []
    T = int(seconds * SR) // HOP + 1
    n = int(seconds * SR)
    for _ in range(B):
        p = prs[rng.integers(len(prs))]
        st = rng.uniform(0, max(0.0, len(p.audio) / SR - seconds))
        i = int(st * SR)
        a = p.audio[i:i + n]; a = np.pad(a, (0, n - len(a)))
        s = p.score.trim(st, st + seconds + 0.5) if st > 0 else p.score
        a = a * 10 ** (rng.uniform(-12, 6) / 20) + rng.normal(0, 1e-4, len(a))
        A.append(a.astype(np.float32)); Ls.append(labels(s, T))
    return np.stack(A), [np.stack(x) for x in zip(*Ls)]

def loss_fn(net, A, L):
    on_l, fr_l, vel_l = net(features(A))
    on, fr, vel = [torch.from_numpy(x) for x in L]
    T = min(on_l.shape[1], on.shape[1])
    on_l, fr_l, vel_l, on, fr, vel = on_l[:, :T], fr_l[:, :T], vel_l[:, :T], on[:, :T], fr[:, :T], vel[:, :T]
    # soften onset targets to +-1 frame neighbours (10 ms)
    on_s = torch.maximum(on, 0.5 * (F.pad(on[:, 1:], (0, 0, 0, 1)) + F.pad(on[:, :-1], (0, 0, 1, 0))).clamp(max=1) * 0.5)
    lo = F.binary_cross_entropy_with_logits(on_l, on_s, pos_weight=torch.tensor(8.0))
    lf = F.binary_cross_entropy_with_logits(fr_l, fr)
    lv = ((torch.sigmoid(vel_l) - vel) ** 2 * on).sum() / on.sum().clamp(min=1)
    return lo + lf + lv

@torch.no_grad()
def transcribe(net, audio, thr=0.5):
    on_l, fr_l, vel_l = net(features(audio[None]))
    on = torch.sigmoid(on_l[0]).numpy(); fr = torch.sigmoid(fr_l[0]).numpy(); vel = torch.sigmoid(vel_l[0]).numpy()
    T = on.shape[0]
    peak = (on >= thr) & (on >= np.roll(on, 1, 0)) & (on > np.roll(on, -1, 0))
    notes = []
    for t, k in zip(*np.nonzero(peak)):
        # sub-frame onset by parabolic interpolation
        y0, y1, y2 = on[max(t - 1, 0), k], on[t, k], on[min(t + 1, T - 1), k]
        d = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2 + 1e-9)
        e = t + 1
        while e < T and fr[e, k] >= 0.5 and not peak[e, k]:
            e += 1
        notes.append((int(k) + LO, max(0.0, (t + np.clip(d, -0.5, 0.5)) / FPS), max(e, t + 2) / FPS, int(np.clip(vel[t, k] * 127, 1, 127))))
    if not notes:
        return Score([], [], [])
    p, a, b, v = zip(*notes)
    return Score(p, a, b, v)

def evaluate(net, target_synth, split="validation", n=10, seconds=20.0):
    synth = make_synth(target_synth, SR)
    pool = corpus.load("piano", split)
    f1, lag = [], []
    for i in range(n):
        s = pool[i].trim(0, seconds) if pool[i].duration > seconds else pool[i]
        a = synth.render(s, tail=1.0)
        est = transcribe(net, a.astype(np.float32))
        m = note_metrics(playable_notes(s.sustained(keep_pedal=True)), est)
        f1.append(m["f1"]); lag.append(m["onset_lag_ms"])
    return float(np.mean(f1)), float(np.nanmedian(lag))

def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000, help="pretraining steps on the world's piano")
    ap.add_argument("--ft-steps", type=int, default=1500, help="fine-tuning steps on the K pairs")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--instruments", default="soundfont,grand")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0); torch.manual_seed(0)
    world = make_synth("piano", SR)
    pool = [s for c in ("piano", "folk", "bach-chorales") for s in corpus.load(c, "train")]
    net = Net(); opt = torch.optim.Adam(net.parameters(), 2e-3)
    print(f"pool {len(pool)} pieces, {sum(p.numel() for p in net.parameters())} parameters", flush=True)
    t0 = time.time()
    for it in range(args.steps):
        A, L = batch_world(pool, world, 8, 2.0, rng)
        loss = loss_fn(net, A, L); opt.zero_grad(); loss.backward(); opt.step()
        if it % 250 == 0:
            print(f"step {it} loss {loss.item():.4f} {time.time() - t0:.0f} s", flush=True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    print("| instrument | pretrained on the world's piano: note F1 / onset lag ms | + K pairs: note F1 / onset lag ms |")
    print("|---|---|---|")
    for inst in args.instruments.split(","):
        pre = evaluate(net, inst)
        ft = Net(); ft.load_state_dict(state); o2 = torch.optim.Adam(ft.parameters(), 5e-4)
        prs = pairs_mod.load(args.pairs, instrument=inst)
        for it in range(args.ft_steps):
            A, L = batch_pairs(prs, 8, 2.0, rng) if it % 2 else batch_world(pool, world, 8, 2.0, rng)
            loss = loss_fn(ft, A, L); o2.zero_grad(); loss.backward(); o2.step()
        post = evaluate(ft, inst)
        print(f"| {inst} | {pre[0]:.3f} / {pre[1]:.1f} | {post[0]:.3f} / {post[1]:.1f} | ({time.time() - t0:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
