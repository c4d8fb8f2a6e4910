"""Benchmark: simulate_summaries on a local Dask cluster vs threads in one process, on the same cores.

Run by hand (not in tests):  python benchmarks/bench_distributed.py [--n 100000] [--workers 2] [--repeat 3] [--kill]
(needs pip install "cartkin[distributed]"). Subjects as in bench_population.py: il10, a Population with
log-normal variability and L0, one infusion of 1e5 cells/kg, 365 days, 30 output times, summaries of
car_blood. Both runs are warm (compiled code loaded, workers started and a first run done) and alternate,
the 1-minute load average printed before each; the median of --repeat runs of each is reported. With
--kill, one more cluster run in which one worker process is killed (SIGKILL) once the first chunk is
back, checked identical to the threaded result. Reports the cluster / threaded wall-time ratio, the bytes
of summaries kept per subject and this process's peak memory, the measured cost of one chunk on a worker
(Dask's task stream) and the overhead per chunk, and projects the wall time for 1e8 subjects on N
workers: 1e8 × (seconds per subject) / N + (chunks / N) × (overhead per chunk), the overhead measured on
many chunks of 8 subjects; it assumes the scheduler keeps up (a few thousand tasks per second; 1e8 / 16384
≈ 6,100 chunks) and that the client holds the summaries (1e8 × 56 bytes ≈ 5.6 GB).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import time

import numba
import numpy as np

import cartkin
from cartkin.population import LogNormal

TIMES = np.linspace(0, 365, 30)
REGIMEN = cartkin.Regimen.single(dose_per_kg=1e5)


def population(n: int) -> cartkin.Population:
    return cartkin.Population("il10", n=n, seed=2026, variability=cartkin.Variability(cv={
        "f_blood": 30, "k_act": 30, "rho": 20, "kappa": 30, "k_exh": 30, "k_mem": 30, "delta_E": 30,
        "delta_M": 30, "r_L": 30, "B0": 30}), covariates={"L0": LogNormal(1000.0, 100.0)})


def timed(progress=False, **options) -> tuple[float, cartkin.PopulationSummary]:
    t0 = time.perf_counter()
    result = cartkin.simulate_summaries("il10", REGIMEN, TIMES, POP, progress=progress, **options)
    return time.perf_counter() - t0, result


def same(a: cartkin.PopulationSummary, b: cartkin.PopulationSummary) -> bool:
    return all(np.array_equal(a.values[k], b.values[k], equal_nan=True) for k in a.values) \
        and np.array_equal(a.codes, b.codes) and np.array_equal(a.counters, b.counters)


def _numba_threads(shared, chunk, progress=None) -> int:
    return numba.get_num_threads()


def main() -> None:
    global POP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="subjects (default 1e5)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one thread each)")
    parser.add_argument("--chunk", type=int, default=16_384, help="subjects per chunk (default 16384)")
    parser.add_argument("--kill", action="store_true",
                        help="then one more cluster run in which a worker is killed after the first chunk")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, median reported (default 3)")
    args = parser.parse_args()
    from distributed import Client, LocalCluster, get_task_stream

    POP = population(args.n)
    load = os.getloadavg()
    numba.set_num_threads(min(args.workers, numba.config.NUMBA_NUM_THREADS))
    cartkin.simulate_summaries("il10", REGIMEN, TIMES, population(64), progress=False)  # load the compiled code
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.wait_for_workers(args.workers)
        cartkin.simulate_summaries("il10", REGIMEN, TIMES, population(256), chunk_size=64, progress=False,
                                   client=client)  # workers load the compiled code
        from cartkin.execution import executor
        task_threads = executor(client).map(_numba_threads, None, [0] * (2 * args.workers), [1] * (2 * args.workers))
        # alternating runs (the idle workers use no CPU during the threaded one): a load change on a
        # shared machine then hits both alike
        threaded_runs, cluster_runs, loads = [], [], []
        with get_task_stream(client) as stream:
            for _ in range(args.repeat):
                loads.append(os.getloadavg()[0])
                wall, expected = timed(chunk_size=args.chunk)
                threaded_runs.append(wall)
                loads.append(os.getloadavg()[0])
                wall, got = timed(chunk_size=args.chunk, client=client)
                cluster_runs.append(wall)
                assert same(expected, got)
                print(f"run {_ + 1}: threads {threaded_runs[-1]:.2f} s, cluster {cluster_runs[-1]:.2f} s "
                      f"(1-min load {loads[-2]:.2f}, {loads[-1]:.2f})", flush=True)
        if not args.repeat:  # --repeat 0 --kill: only the reference result for the run with a killed worker
            wall, expected = timed(chunk_size=args.chunk)
            print(f"reference: threads {wall:.2f} s (1-min load {os.getloadavg()[0]:.2f})", flush=True)
        chunks = [t for t in stream.data if t["key"].startswith("cartkin-summary_chunk")]
        killed = []
        if args.kill:  # one worker process dies (SIGKILL) once the first chunk is back: its chunks are redone
            victim = next(iter(client.run(os.getpid).values()))

            def kill_once(done):
                if not killed:
                    os.kill(victim, signal.SIGKILL)
                    killed.append(done)
            kill_wall, after_kill = timed(chunk_size=args.chunk, client=client, progress=kill_once)
            kill_same = same(expected, after_kill)
            print(f"one worker killed (SIGKILL) after {killed[0]:,} subjects were back: run took {kill_wall:.2f} s "
                  f"(1-min load {os.getloadavg()[0]:.2f}), result identical to the threaded run: "
                  f"{'yes' if kill_same else 'NO'}", flush=True)
            client.wait_for_workers(args.workers, timeout=120)
        # the cost of a chunk itself: many chunks of 8 subjects, wall time beyond their compute time
        tiny_n, tiny_chunk = 4096, 8
        with get_task_stream(client) as tiny_stream:
            t0 = time.perf_counter()
            cartkin.simulate_summaries("il10", REGIMEN, TIMES, population(tiny_n), chunk_size=tiny_chunk,
                                       progress=False, client=client)
            tiny_wall = time.perf_counter() - t0
        tiny = [t for t in tiny_stream.data if t["key"].startswith("cartkin-summary_chunk")]

    runs = args.repeat
    tiny_compute = sum(sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
                       for t in tiny)
    # wall time per chunk and worker beyond computing: scheduling, transfers, results on the client
    overhead = max(0.0, tiny_wall - tiny_compute / args.workers) / (len(tiny) / args.workers)
    print(f"# cartkin {cartkin.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"numba threads: {numba.get_num_threads()} in the threaded run, {sorted(set(task_threads))} in each "
          f"task on a worker")
    summary_bytes = sum(v.nbytes for v in expected.values.values()) + expected.codes.nbytes
    print(f"summaries kept: {summary_bytes / args.n:.0f} bytes per subject ({summary_bytes / 1e6:.0f} MB); peak memory "
          f"of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")
    print(f"overhead per chunk {overhead * 1e3:.1f} ms ({len(tiny)} chunks of {tiny_chunk} subjects in "
          f"{tiny_wall:.2f} s)")
    if not runs:
        return
    threaded, distributed_wall = float(np.median(threaded_runs)), float(np.median(cluster_runs))
    compute = [sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute") for t in chunks]
    n_chunks = -(-args.n // args.chunk)
    per_chunk = float(np.median(compute))
    per_subject = sum(compute) / (runs * args.n)
    print(f"\n{args.n} il10 subjects, 365 days, 30 times, chunks of {args.chunk} ({n_chunks}), median of {runs} "
          f"alternating runs (1-min load {min(loads):.2f}-{max(loads):.2f})\n")
    print("| run | wall s | subjects/s |")
    print("|---|---:|---:|")
    print(f"| threads in one process ({numba.get_num_threads()} threads) | {threaded:.2f} | {args.n / threaded:,.0f} |")
    print(f"| LocalCluster, {args.workers} processes x 1 thread | {distributed_wall:.2f} | "
          f"{args.n / distributed_wall:,.0f} |")
    print(f"\nratio cluster / threaded: {distributed_wall / threaded:.2f} (identical results: yes)")
    print(f"one chunk on a worker: {per_chunk:.2f} s (median of {len(compute)}), {per_subject * 1e6:.0f} µs per "
          f"subject")
    print("\nprojection for 1e8 subjects (chunks of {:,}):\n".format(args.chunk))
    print("| workers | wall |")
    print("|---:|---:|")
    big_chunks = -(-100_000_000 // args.chunk)
    for workers in (2, 16, 64, 256, 1024):
        wall = 1e8 * per_subject / workers + big_chunks / workers * overhead
        print(f"| {workers} | {wall / 3600:.2f} h |" if wall > 3600 else f"| {workers} | {wall / 60:.1f} min |")


if __name__ == "__main__":
    main()
