"""Counter-based random numbers: draw k of subject i under seed s depends on (s, i, k) only.

Each value is a SplitMix64 hash of the three integers, so a subject's draws are the same whether it is
simulated alone, in a population of a million, in any chunk, on any number of threads.
"""
import math

import numpy as np
from numba import njit, prange

MASK = 0xFFFFFFFFFFFFFFFF


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform(seed, stream, subject, draw):
    """A uniform in (0, 1) from 53 random bits."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    z = _mix(np.uint64(seed) * golden + np.uint64(stream))
    z = _mix(z ^ (np.uint64(subject) * golden))
    z = _mix(z ^ (np.uint64(draw) + golden))
    return ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, parallel=True)
def uniforms(seed, stream, first_subject, n_subjects, n_draws):
    """(n_subjects × n_draws) uniforms for subjects first_subject ... first_subject + n_subjects - 1."""
    out = np.empty((n_subjects, n_draws))
    for i in prange(n_subjects):
        for k in range(n_draws):
            out[i, k] = _uniform(seed, stream, first_subject + i, k)
    return out


@njit(cache=True, parallel=True)
def standard_normals(seed, stream, first_subject, n_subjects, n_draws):
    """(n_subjects × n_draws) standard normals (Box–Muller on draws 2k and 2k+1)."""
    out = np.empty((n_subjects, n_draws))
    for i in prange(n_subjects):
        for k in range(n_draws):
            u1 = _uniform(seed, stream, first_subject + i, 2 * k)
            u2 = _uniform(seed, stream, first_subject + i, 2 * k + 1)
            out[i, k] = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return out
