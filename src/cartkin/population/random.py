"""Counter-based random numbers: draw k of subject i under seed s is a pure function of (s, i, k).

Each draw hashes the three integers with SplitMix64-style finalisers into 64 random bits; the top 53
bits give a uniform strictly inside (0, 1), and a standard normal is the inverse normal CDF of that same
uniform (Wichura's AS 241, accurate to about 1e-16). There is no generator state, so a subject's draws
are identical whether it is drawn alone, in a population of a million, in any chunk, on any number of
threads. Counter k therefore means the same thing for `uniforms` and `standard_normals`: the normal at
counter k is Φ⁻¹ of the uniform at counter k.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..errors import CartkinError

#: seeds are unsigned 64-bit integers
MAX_SEED = 2 ** 64 - 1
#: counters (draw indices) are non-negative signed 64-bit integers
MAX_COUNTER = 2 ** 63 - 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_KEY_SUBJECT = np.uint64(0xD1B54A32D192ED03)
_KEY_DRAW = np.uint64(0x8CB92BA72F3D8DD7)


@njit(cache=True, inline="always")
def _mix(z):
    """SplitMix64 finaliser (a bijection of uint64 with full avalanche)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def random_bits(seed, subject, draw):
    """64 random bits for (seed, subject, draw); all three are uint64."""
    z = _mix(seed + _GOLDEN)
    z = _mix(z ^ (subject * _KEY_SUBJECT + _GOLDEN))
    return _mix(z ^ (draw * _KEY_DRAW + _GOLDEN))


@njit(cache=True)
def uniform(seed, subject, draw):
    """A uniform in (0, 1) from the top 53 bits: (k + 0.5) / 2**53, never 0 or 1."""
    z = random_bits(seed, subject, draw)
    return (float(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def normal_quantile(p):
    """Inverse standard normal CDF Φ⁻¹(p) (Wichura 1988, AS 241 PPND16); ±inf at 0 and 1."""
    if not (p > 0.0):
        return -math.inf if p == 0.0 else math.nan
    if not (p < 1.0):
        return math.inf if p == 1.0 else math.nan
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r
                    + 6.7265770927008700853e+4) * r + 4.5921953931549871457e+4) * r
                  + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                + 1.3314166789178437745e+2) * r + 3.3871328727963666080e0)
        den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r
                    + 3.9307895800092710610e+4) * r + 2.1213794301586595867e+4) * r
                  + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                + 4.2313330701600911252e+1) * r + 1.0)
        return q * num / den
    r = p if q < 0.0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        r -= 1.6
        num = (((((((7.74545014278341407640e-4 * r + 2.27238449892691845833e-2) * r
                    + 2.41780725177450611770e-1) * r + 1.27045825245236838258e0) * r
                  + 3.64784832476320460504e0) * r + 5.76949722146069140550e0) * r
                + 4.63033784615654529590e0) * r + 1.42343711074968357734e0)
        den = (((((((1.05075007164441684324e-9 * r + 5.47593808499534494600e-4) * r
                    + 1.51986665636164571966e-2) * r + 1.48103976427480074590e-1) * r
                  + 6.89767334985100004550e-1) * r + 1.67638483018380384940e0) * r
                + 2.05319162663775882187e0) * r + 1.0)
    else:
        r -= 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r
                    + 1.24266094738807843860e-3) * r + 2.65321895265761230930e-2) * r
                  + 2.96560571828504891230e-1) * r + 1.78482653991729133580e0) * r
                + 5.46378491116411436990e0) * r + 6.65790464350110377720e0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r
                    + 1.84631831751005468180e-5) * r + 7.86869131145613259100e-4) * r
                  + 1.48753612908506148525e-2) * r + 1.36929880922735805310e-1) * r
                + 5.99832206555887937690e-1) * r + 1.0)
    x = num / den
    return -x if q < 0.0 else x


@njit(cache=True, parallel=True)
def _draw_kernel(seed, subjects, counters, normal):
    """out[i, c] = draw `counters[c]` of subject `subjects[i]` (uniform, or Φ⁻¹ of it)."""
    out = np.empty((subjects.size, counters.size))
    for i in prange(subjects.size):
        s = np.uint64(subjects[i])
        for c in range(counters.size):
            u = uniform(seed, s, np.uint64(counters[c]))
            out[i, c] = normal_quantile(u) if normal else u
    return out


@njit(cache=True)
def _quantiles(p):
    out = np.empty(p.size)
    for k in range(p.size):
        out[k] = normal_quantile(p[k])
    return out


def normal_quantiles(p) -> np.ndarray:
    """Φ⁻¹ applied elementwise (same shape as p)."""
    arr = np.asarray(p, dtype=float)
    return _quantiles(np.ascontiguousarray(arr).ravel()).reshape(arr.shape)


def _seed(seed) -> np.uint64:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise CartkinError(f"seed must be an integer from 0 to 2**64 - 1, got {seed!r}")
    return np.uint64(int(seed))


def _indices(values, what: str, limit: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise CartkinError(f"{what} must be a one-dimensional array of integers")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > limit):
        raise CartkinError(f"{what} must lie between 0 and {limit}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise CartkinError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def uniforms_at(seed: int, subjects, counters) -> np.ndarray:
    """Uniforms in (0, 1): row i, column c is draw `counters[c]` of subject `subjects[i]`."""
    return _draw_kernel(_seed(seed), _indices(subjects, "subjects", MAX_COUNTER),
                        _indices(counters, "counters", MAX_COUNTER), False)


def standard_normals_at(seed: int, subjects, counters) -> np.ndarray:
    """Standard normals (Φ⁻¹ of `uniforms_at` with the same arguments)."""
    return _draw_kernel(_seed(seed), _indices(subjects, "subjects", MAX_COUNTER),
                        _indices(counters, "counters", MAX_COUNTER), True)


def _block(first_subject, n_subjects, n_draws, offset):
    first = _count(first_subject, "first_subject")
    n = _count(n_subjects, "n_subjects")
    k = _count(n_draws, "n_draws")
    start = _count(offset, "offset")
    if first + n > MAX_COUNTER or start + k > MAX_COUNTER:
        raise CartkinError("subject or draw index beyond 2**63 - 1")
    return np.arange(first, first + n, dtype=np.int64), np.arange(start, start + k, dtype=np.int64)


def uniforms(seed: int, first_subject: int, n_subjects: int, n_draws: int, offset: int = 0) -> np.ndarray:
    """(n_subjects × n_draws) uniforms in (0, 1) for subjects first_subject, first_subject + 1, ...;
    column k is draw offset + k."""
    subjects, counters = _block(first_subject, n_subjects, n_draws, offset)
    return _draw_kernel(_seed(seed), subjects, counters, False)


def standard_normals(seed: int, first_subject: int, n_subjects: int, n_draws: int,
                     offset: int = 0) -> np.ndarray:
    """(n_subjects × n_draws) standard normals, laid out like `uniforms`."""
    subjects, counters = _block(first_subject, n_subjects, n_draws, offset)
    return _draw_kernel(_seed(seed), subjects, counters, True)
