"""Benchmark: Dormand–Prince over W subjects in lockstep (structure of arrays) against the scalar kernel.

Run by hand (not in tests):  python benchmarks/bench_lockstep.py [--subjects 2000] [--days 40] [--lanes 8]

A measured prototype of issue 16's lockstep kernel for the non-stiff part of a subject, kept here rather
than in the package: W lanes each hold one subject (its own time, step size, PI error control, step
counts); every step is attempted for all lanes together (stage combinations, the right-hand side of
bench_lanes.py and the error norm run as loops over the lanes, which LLVM vectorises), then accepted or
rejected lane by lane; a finished lane takes the next subject, so lanes stay busy. The arithmetic of
every lane is that of cartkin.solve.methods.dopri5 in the same order, so each lane must reproduce the
scalar kernel bit for bit: the script checks that against `simulate_batch(method="dopri5")` (same step
counts, outputs equal), and times both on the calling thread's CPU clock (median of --repeats).

Scope of the prototype: one dose at day 0, no breakpoints, dopri5 only (no stiffness switch, no
negative-state check), il10 over the first --days days (the expansion, where auto stays with dopri5).
It reports lane occupancy: the share of lane-steps that advanced a subject (the rest are lanes left
idle at the end, when no subject is left to take).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_lanes import lane_source, load  # noqa: E402
from bench_simulate import population  # noqa: E402

LOCKSTEP = '''
from cartkin.solve.methods.dopri5 import (A21, A31, A32, A41, A42, A43, A51, A52, A53, A54, A61, A62, A63,
                                          A64, A65, B1, B3, B4, B5, B6, C2, C3, C4, C5, E1, E3, E4, E5, E6,
                                          E7, _dense)
from cartkin.solve.common import initial_step


@njit(error_model="numpy")
def lockstep(rhs_lanes, rhs, initial, dose_increments, P, Pl, dose, t_out, rtol, atol, out, steps, lane_steps):
    """Solve every row of P from day 0 to t_out[-1]; out[s] the states at t_out, steps[s] = (accepted,
    rejected). Pl: P transposed into lane rows (W per parameter), refilled as lanes take subjects."""
    n = {n}
    W = {W}
    n_sub = P.shape[0]
    n_out = t_out.size
    t_end = t_out[n_out - 1]
    Y = np.empty(n * W)
    YS = np.empty(n * W)
    YN = np.empty(n * W)
    K = np.empty(7 * n * W)
    F = np.empty({n_calls} * W)
    T = np.zeros(W)
    TS = np.zeros(W)
    H = np.zeros(W)
    E = np.zeros(W)
    LOGP = np.zeros(W)
    REJ = np.zeros(W, dtype=np.bool_)
    LAST = np.zeros(W, dtype=np.bool_)
    SUB = -np.ones(W, dtype=np.int64)
    KO = np.zeros(W, dtype=np.int64)  # next output index per lane
    y = np.empty(n)
    f0 = np.empty(n)
    inc = np.zeros((2, n))
    Kl = np.empty((7, n))
    counters = np.zeros(5, dtype=np.int64)
    next_subject = 0
    busy = 0
    # start: fill every lane
    for l in range(W):
        if next_subject < n_sub:
            SUB[l] = next_subject
            next_subject += 1
            busy += 1
    while busy > 0:
        # (re)start lanes that hold a new subject: initial state, day-0 dose, first derivative, first step
        for l in range(W):
            s = SUB[l]
            if s >= 0 and H[l] == 0.0:
                p = P[s]
                for q in range(p.size):
                    Pl[q * W + l] = p[q]
                initial(p, y)
                out[s, 0, :] = y  # the pre-dose sample at day 0
                dose_increments(p, inc)
                for i in range(n):
                    y[i] += dose * inc[0, i]
                rhs(0.0, y, p, 0.5 * t_end, f0)
                H[l] = initial_step(rhs, 0.0, y, f0, p, 0.5 * t_end, t_end, 5, rtol, atol, counters)
                T[l] = 0.0
                LOGP[l] = math.log(1e-4)
                REJ[l] = False
                KO[l] = 1
                for i in range(n):
                    Y[i * W + l] = y[i]
                    K[i * W + l] = f0[i]
        lane_steps[0] += W
        lane_steps[1] += busy
        for l in range(W):
            if SUB[l] >= 0:
                if T[l] + 1.01 * H[l] >= t_end:
                    H[l] = t_end - T[l]
                    LAST[l] = True
                else:
                    LAST[l] = False
        # stages 2..7 for all lanes (idle lanes compute on their last values and are ignored)
        for l in range(W):
            TS[l] = T[l] + C2 * H[l]
        for i in range(n):
            for l in range(W):
                YS[i * W + l] = Y[i * W + l] + H[l] * A21 * K[i * W + l]
        rhs_lanes(TS, YS, Pl, K[1 * n * W:2 * n * W], F, W)
        for l in range(W):
            TS[l] = T[l] + C3 * H[l]
        for i in range(n):
            for l in range(W):
                YS[i * W + l] = Y[i * W + l] + H[l] * (A31 * K[i * W + l] + A32 * K[(n + i) * W + l])
        rhs_lanes(TS, YS, Pl, K[2 * n * W:3 * n * W], F, W)
        for l in range(W):
            TS[l] = T[l] + C4 * H[l]
        for i in range(n):
            for l in range(W):
                YS[i * W + l] = Y[i * W + l] + H[l] * (A41 * K[i * W + l] + A42 * K[(n + i) * W + l]
                                                      + A43 * K[(2 * n + i) * W + l])
        rhs_lanes(TS, YS, Pl, K[3 * n * W:4 * n * W], F, W)
        for l in range(W):
            TS[l] = T[l] + C5 * H[l]
        for i in range(n):
            for l in range(W):
                YS[i * W + l] = Y[i * W + l] + H[l] * (A51 * K[i * W + l] + A52 * K[(n + i) * W + l]
                                                      + A53 * K[(2 * n + i) * W + l] + A54 * K[(3 * n + i) * W + l])
        rhs_lanes(TS, YS, Pl, K[4 * n * W:5 * n * W], F, W)
        for l in range(W):
            TS[l] = t_end if LAST[l] else T[l] + H[l]
        for i in range(n):
            for l in range(W):
                YS[i * W + l] = Y[i * W + l] + H[l] * (A61 * K[i * W + l] + A62 * K[(n + i) * W + l]
                                                      + A63 * K[(2 * n + i) * W + l] + A64 * K[(3 * n + i) * W + l]
                                                      + A65 * K[(4 * n + i) * W + l])
        rhs_lanes(TS, YS, Pl, K[5 * n * W:6 * n * W], F, W)
        for i in range(n):
            for l in range(W):
                YN[i * W + l] = Y[i * W + l] + H[l] * (B1 * K[i * W + l] + B3 * K[(2 * n + i) * W + l]
                                                      + B4 * K[(3 * n + i) * W + l] + B5 * K[(4 * n + i) * W + l]
                                                      + B6 * K[(5 * n + i) * W + l])
        rhs_lanes(TS, YN, Pl, K[6 * n * W:7 * n * W], F, W)
        # error norm per lane, summed over states in the scalar kernel's order
        for l in range(W):
            E[l] = 0.0
        for i in range(n):
            for l in range(W):
                err = H[l] * (E1 * K[i * W + l] + E3 * K[(2 * n + i) * W + l] + E4 * K[(3 * n + i) * W + l]
                              + E5 * K[(4 * n + i) * W + l] + E6 * K[(5 * n + i) * W + l]
                              + E7 * K[(6 * n + i) * W + l])
                sk = atol + rtol * max(abs(Y[i * W + l]), abs(YN[i * W + l]))
                r = err / sk
                E[l] += r * r
        for l in range(W):
            E[l] = math.sqrt(E[l] / n)
        # accept or reject, lane by lane
        for l in range(W):
            s = SUB[l]
            if s < 0:
                continue
            e = E[l]
            h = H[l]
            if e <= 1.0:
                steps[s, 0] += 1
                t_new = TS[l]
                while KO[l] < n_out and t_out[KO[l]] <= t_new:
                    k = KO[l]
                    if t_out[k] == t_new:
                        for i in range(n):
                            out[s, k, i] = YN[i * W + l]
                    else:
                        for j in range(7):
                            for i in range(n):
                                Kl[j, i] = K[(j * n + i) * W + l]
                        for i in range(n):
                            y[i] = Y[i * W + l]
                        _dense(Kl, y, h, (t_out[k] - T[l]) / h, out[s, k])
                    KO[l] = k + 1
                T[l] = t_new
                for i in range(n):
                    Y[i * W + l] = YN[i * W + l]
                    K[i * W + l] = K[(6 * n + i) * W + l]
                log_e = math.log(max(e, 1e-10))
                fac = 0.9 * math.exp(-0.17 * log_e + 0.04 * LOGP[l])
                fac = min(10.0, max(0.2, fac))
                if REJ[l]:
                    fac = min(fac, 1.0)
                LOGP[l] = max(log_e, math.log(1e-4))
                H[l] = h * fac
                REJ[l] = False
                if not (T[l] < t_end):  # finished: take the next subject
                    H[l] = 0.0
                    if next_subject < n_sub:
                        SUB[l] = next_subject
                        next_subject += 1
                    else:
                        SUB[l] = -1
                        busy -= 1
            else:
                steps[s, 1] += 1
                H[l] = h * max(0.2, 0.9 * e ** -0.2)
                REJ[l] = True
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--days", type=float, default=40.0)
    ap.add_argument("--lanes", default="4,8")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-9)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import numba

    import cartkin
    from cartkin.codegen import compile_model
    numba.set_num_threads(1)
    model = cartkin.load_model("il10")
    mod = compile_model(model)
    n = model.n_states()
    P = population(model, args.subjects)
    times = np.linspace(0.0, args.days, 30)
    dose = 1e5
    regimen = cartkin.Regimen.single(dose)
    kw = dict(rtol=args.rtol, atol=args.atol, method="dopri5", progress=False)
    cartkin.simulate_batch(model, regimen, times, P[:4], **kw)
    cpu = []
    for _ in range(args.repeats):
        c0 = time.thread_time()
        ref = cartkin.simulate_batch(model, regimen, times, P, **kw)
        cpu.append(time.thread_time() - c0)
    scalar = statistics.median(cpu) / args.subjects
    ref_states = np.stack([ref.subject(i).states for i in range(args.subjects)])
    ref_steps = ref.counters[:, 1:3]
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, numba {numba.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}; il10, {args.subjects} subjects, "
          f"days 0-{args.days:g}, rtol {args.rtol:g}, dopri5; mean steps {ref.counters[:, 0].mean():.0f}")
    print("| kernel | µs per subject (CPU) | speed-up | lane occupancy | same steps as scalar | max abs. difference |")
    print("|---|---|---|---|---|---|")
    print(f"| scalar (simulate_batch) | {scalar * 1e6:.1f} | 1.00× | | | |")
    with tempfile.TemporaryDirectory() as folder:
        for W in (int(w) for w in args.lanes.split(",")):
            source, n_calls = lane_source(model, W)
            lanes = load(source + "\n" + LOCKSTEP.format(n=n, W=W, n_calls=max(n_calls, 1)), folder,
                         f"lockstep_{W}")
            Pl = np.empty(P.shape[1] * W)
            for _ in range(2):  # first call compiles
                out = np.full((args.subjects, times.size, n), np.nan)
                steps = np.zeros((args.subjects, 2), dtype=np.int64)
                occupancy = np.zeros(2, dtype=np.int64)
                c0 = time.thread_time()
                lanes.lockstep(lanes.rhs_lanes, mod.rhs, mod.initial, mod.dose_increments, P, Pl, dose, times,
                               args.rtol, args.atol, out, steps, occupancy)
                cpu = [time.thread_time() - c0]
            for _ in range(args.repeats - 1):
                c0 = time.thread_time()
                lanes.lockstep(lanes.rhs_lanes, mod.rhs, mod.initial, mod.dose_increments, P, Pl, dose, times,
                               args.rtol, args.atol, out, np.zeros_like(steps), occupancy)
                cpu.append(time.thread_time() - c0)
            t = statistics.median(cpu) / args.subjects
            same = bool(np.array_equal(steps, ref_steps))
            diff = float(np.nanmax(np.abs(out - ref_states)))
            print(f"| lockstep W={W} | {t * 1e6:.1f} | {scalar / t:.2f}× | {occupancy[1] / occupancy[0]:.3f} | "
                  f"{same} | {diff:.1e} |")


if __name__ == "__main__":
    main()
