"""Dense LU factorisation with partial pivoting, for the Rosenbrock stage equations.

The systems are small (n ≤ ~20 states), so a straightforward in-place LU beats calling LAPACK through
numba for every step of every subject. The diagonal of U is stored inverted, and both triangular solves
run column by column (independent updates rather than one long chain of dependent additions): the
solves are latency-bound at this size, and this halves their cost.
"""
from numba import njit


@njit(cache=True, error_model="numpy")
def lu_factor(A, piv):
    """Factor A in place (unit-lower L below the diagonal, U above, 1/U[k, k] on it). False if singular."""
    n = A.shape[0]
    for k in range(n):
        m = k
        big = abs(A[k, k])
        for i in range(k + 1, n):
            if abs(A[i, k]) > big:
                big = abs(A[i, k])
                m = i
        piv[k] = m
        if big == 0.0 or big != big:
            return False
        if m != k:
            for j in range(n):
                tmp = A[k, j]
                A[k, j] = A[m, j]
                A[m, j] = tmp
        inv = 1.0 / A[k, k]
        A[k, k] = inv
        for i in range(k + 1, n):
            f = A[i, k] * inv
            A[i, k] = f
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]
    return True


@njit(cache=True, error_model="numpy")
def lu_solve(LU, piv, b):
    """Solve A x = b in place (b becomes x) from lu_factor's output."""
    n = LU.shape[0]
    for k in range(n):
        m = piv[k]
        if m != k:
            tmp = b[k]
            b[k] = b[m]
            b[m] = tmp
    for j in range(n):
        bj = b[j]
        if bj != 0.0:
            for i in range(j + 1, n):
                b[i] -= LU[i, j] * bj
    for j in range(n - 1, -1, -1):
        bj = b[j] * LU[j, j]
        b[j] = bj
        if bj != 0.0:
            for i in range(j):
                b[i] -= LU[i, j] * bj
