"""Dense LU factorisation with partial pivoting, for the Rosenbrock stage equations.

The systems are small (n ≤ ~20 states), so a straightforward in-place Doolittle LU beats calling
LAPACK through numba for every step of every subject.
"""
from numba import njit


@njit(cache=True)
def lu_factor(A, piv):
    """Factor A in place (L unit-lower and U share A); piv records row swaps. False if singular."""
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
        for i in range(k + 1, n):
            A[i, k] *= inv
            f = A[i, k]
            if f != 0.0:
                for j in range(k + 1, n):
                    A[i, j] -= f * A[k, j]
    return True


@njit(cache=True)
def lu_solve(LU, piv, b):
    """Solve A x = b in place (b becomes x) from lu_factor's output."""
    n = LU.shape[0]
    for k in range(n):
        m = piv[k]
        if m != k:
            tmp = b[k]
            b[k] = b[m]
            b[m] = tmp
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= LU[i, j] * b[j]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= LU[i, j] * b[j]
        b[i] = s / LU[i, i]
