"""Benchmark: does a right-hand side over W subjects at once (structure of arrays) vectorise, and by how much?

Run by hand (not in tests):  python benchmarks/bench_lanes.py [--model il10] [--calls 2000000]

The first building block of the lockstep kernel (issue 16), measured on its own: the model's right-hand side
as the package generates it for W lanes (cartkin.codegen.lanes.rhs_lanes_source: the same sympy expressions,
CSE and printer as the scalar rhs),
states, parameters and derivatives in flat buffers with one row of W values per state or parameter
(`Y[i*W + l]`), and a loop over the lanes with a run-time trip count. Calls to exp/log are computed first
in a loop of their own (numba has no SVML here, so a libm call inside the loop keeps it scalar). The
script checks that every lane gives bit-identical derivatives to the scalar generated `rhs`, counts the
packed (ymm/zmm) and scalar double-precision arithmetic instructions in the assembly, and times the
scalar `rhs` against the lane version per subject, on the calling thread's CPU clock (time.thread_time),
median of --repeats.

What the probes found (numba 0.68.1, LLVM's loop vectoriser, no fast-math): a lane loop whose trip count
is a literal (W) is fully unrolled and stays scalar; a run-time trip count over 2-D arrays (P[i, l]) is
vectorised for a few rows but not for il10's 36 parameter and 9 state rows (the run-time alias checks
between rows exceed LLVM's limit); flat buffers with a literal row stride vectorise (zmm on AVX-512).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import statistics
import tempfile
import time

import numpy as np

BENCH = '''
@njit(error_model="numpy")
def bench_scalar(rhs, n, y, p, out):
    s = 0.0
    for k in range(n):
        rhs(k * 1e-6, y, p, 0.0, out)
        s += out[0]
        y[0] += 1e-12
    return s


@njit(error_model="numpy")
def bench_lanes(rhs, n, t, Y, P, S, OUT, F, w):
    s = 0.0
    for k in range(n):
        for l in range(w):
            t[l] = k * 1e-6 + l * 1e-7
        rhs(t, Y, P, S, OUT, F, w)
        s += OUT[0]
        Y[0] += 1e-12
    return s
'''


def load(source: str, folder: str, name: str):
    path = os.path.join(folder, name + ".py")
    with open(path, "w") as fh:
        fh.write("import math\nimport numpy as np\nfrom numba import njit\n\n" + source + "\n" + BENCH)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_time(fn, args, repeats: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        c0 = time.thread_time()
        fn(*args)
        times.append(time.thread_time() - c0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="il10")
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import numba

    import cartkin
    from cartkin.codegen import compile_model
    from cartkin.codegen.lanes import rhs_lanes_source  # the package's lane right-hand side, as the kernel uses it
    model = cartkin.load_model(args.model)
    mod = compile_model(model)
    n = model.n_states()
    p = np.array([q.default for q in model.parameter_info])
    y = np.empty(n)
    mod.initial(p, y)
    y = np.abs(y) + 1.0
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, numba {numba.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}; model {model.name}, {n} states")
    print("| lanes W | scalar rhs ns per subject (CPU) | lane rhs ns per subject (CPU) | speed-up | lanes bit-identical "
          "| packed arithmetic (registers) | scalar arithmetic |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for W in (4, 8):
            source, n_calls = rhs_lanes_source(model, W)
            lanes = load(source, folder, f"lanes_{model.name}_{W}")
            rng = np.random.default_rng(W)
            Y = (y[:, None] * rng.uniform(0.5, 2.0, (n, W))).ravel()
            P = (p[:, None] * rng.uniform(0.9, 1.1, (p.size, W))).ravel()
            OUT, F, t, S = np.empty(n * W), np.empty(max(n_calls, 1) * W), np.zeros(W), np.zeros(W)
            scalar = cpu_time(lanes.bench_scalar, (mod.rhs, args.calls, y.copy(), p, np.empty(n)), args.repeats)
            vector = cpu_time(lanes.bench_lanes, (lanes.rhs_lanes, args.calls // W, t, Y.copy(), P, S, OUT, F, W),
                              args.repeats)
            lanes.rhs_lanes(t, Y, P, S, OUT, F, W)
            same = True
            ref = np.empty(n)
            for lane in range(W):
                mod.rhs(t[lane], Y.reshape(n, W)[:, lane].copy(), P.reshape(-1, W)[:, lane].copy(), S[lane], ref)
                same &= bool(np.array_equal(ref, OUT.reshape(n, W)[:, lane]))
            asm = next(iter(lanes.rhs_lanes.inspect_asm().values()))
            ops = re.findall(r"\n\s+(v\w+)\s+([^\n]*)", asm)
            arith = r"(add|sub|mul|div|fmadd\w*|fmsub\w*|fnmadd\w*)"
            packed = [a for o, a in ops if re.fullmatch(r"v" + arith + "pd", o)]
            regs = sorted({r for a in packed for r in re.findall(r"([xyz]mm)\d", a)})
            scalar_ops = [o for o, _ in ops if re.fullmatch(r"v" + arith + "sd", o)]
            print(f"| {W} | {scalar / args.calls * 1e9:.1f} | {vector / args.calls * 1e9:.1f} | "
                  f"{scalar / vector:.2f}× | {same} | {len(packed)} ({', '.join(regs)}) | {len(scalar_ops)} |")


if __name__ == "__main__":
    main()
