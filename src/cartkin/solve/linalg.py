"""Dense LU factorisation with partial pivoting, for the Rosenbrock stage equations.

The systems are small (n = the model's states, ~4–40), so an in-place LU beats calling LAPACK through
numba for every step of every subject. The diagonal of U is stored inverted, and both triangular solves
run column by column (independent updates rather than one long chain of dependent additions).

The two functions are a source template: code generation writes them into each model's module with n
as a literal, so LLVM unrolls the loops for that size. For il10 (n = 8) this takes a solve from 104 to
34 ns and a factorisation from 117 to 90 ns; a Rodas4 step makes one factorisation and six solves.
"""
from numba.core import types
from numba.extending import intrinsic


@intrinsic
def select(typingctx, c, x, y):
    """`x if c else y` as one LLVM select instruction, no branch: the W-lane LU below makes hundreds of
    per-lane pivot choices in one loop body, which as branches overflow numba's SSA pass and keep LLVM from
    vectorising it."""
    if not isinstance(c, types.Boolean):
        return None
    ty = typingctx.unify_types(x, y)
    if ty is None:
        return None
    if isinstance(ty, types.Literal):
        ty = ty.literal_type

    def codegen(context, builder, signature, args):
        cond, a, b = args
        a = context.cast(builder, a, signature.args[1], ty)
        b = context.cast(builder, b, signature.args[2], ty)
        return builder.select(cond, a, b)
    return ty(c, x, y), codegen


SOURCE = '''
@njit(cache=True, error_model="numpy", fastmath=FAST_MATH)
def lu_factor(A, piv):
    """Factor A ({n}×{n}) in place: unit-lower L below the diagonal, U above, 1/U[k, k] on it.
    False if singular."""
    for k in range({n}):
        m = k
        big = abs(A[k, k])
        for i in range(k + 1, {n}):
            if abs(A[i, k]) > big:
                big = abs(A[i, k])
                m = i
        piv[k] = m
        if big == 0.0 or big != big:
            return False
        if m != k:
            for j in range({n}):
                tmp = A[k, j]
                A[k, j] = A[m, j]
                A[m, j] = tmp
        inv = 1.0 / A[k, k]
        A[k, k] = inv
        for i in range(k + 1, {n}):
            f = A[i, k] * inv
            A[i, k] = f
            for j in range(k + 1, {n}):
                A[i, j] -= f * A[k, j]
    return True


@njit(cache=True, error_model="numpy", fastmath=FAST_MATH)
def lu_solve(LU, piv, b):
    """Solve A x = b in place (b becomes x) from lu_factor's output."""
    for k in range({n}):
        m = piv[k]
        tmp = b[k]
        b[k] = b[m]
        b[m] = tmp
    for j in range({n}):
        bj = b[j]
        for i in range(j + 1, {n}):
            b[i] -= LU[i, j] * bj
    for j in range({n} - 1, -1, -1):
        bj = b[j] * LU[j, j]
        b[j] = bj
        for i in range(j):
            b[i] -= LU[i, j] * bj
'''


def source(n: int) -> str:
    """`lu_factor` and `lu_solve` for n × n systems, as Python source for a generated module (which
    defines `njit` and `FAST_MATH`)."""
    return SOURCE.format(n=int(n))



# ---- the same factorisation and solve over W lanes (the lockstep Rodas4 of cartkin.solve.lanes) ----------

def lanes_source(n: int, lanes: int) -> str:
    """`lu_factor_lanes(J, FAC, A, _w)` and `lu_solve_lanes(A, B, _w)` for W lanes of n × n systems, as
    Python source for a generated lane module.

    Flat structure-of-arrays buffers: entry (i, j) of lane l's matrix at J[(i*n + j)*W + l], entry i of its
    vector at B[i*W + l]. lu_factor_lanes forms (FAC I − J) as rodas.advance does and factors it into A: the
    factors as lu_factor leaves them at A[(i*n + j)*W + l], then the pivot row of step k at
    A[(n*n + k)*W + l] and 1.0 at A[(n*n + n)*W + l], or 0.0 if the lane's matrix is singular (lu_factor
    returns False; its factors are then meaningless). The pivots are kept as floats in A (exact for these
    small integers): a second array written in the loop (int64 pivots) stopped LLVM from vectorising it for
    il10's n = 9. lu_solve_lanes solves with A in place of B.

    Each is one loop over the lanes whose body is the whole of lu_factor (lu_solve) unrolled for this n, on
    local values: each lane chooses its own pivot, rows are exchanged with per-lane selects (moves, no
    arithmetic), and every lane performs lu_factor's (lu_solve's) operations in their order on its own
    numbers, so its factors, pivots, singular flag and solutions equal the scalar ones bit for bit. One loop
    body with literal offsets is what LLVM vectorises over the lanes (as for the lane right-hand side);
    loops over rows with run-time offsets stayed scalar (6.4 µs per factorisation of 8 lanes for il10)."""
    n, W = int(n), int(lanes)

    def a(i, j):
        return f"_a{i}_{j}"

    f = ['@njit(cache=True, error_model="numpy")', "def lu_factor_lanes(J, FAC, A, _w):",
         "    for _l in range(_w):", "        _fac = FAC[_l]", "        _ok = True"]
    for i in range(n):
        for j in range(n):
            f.append(f"        {a(i, j)} = -J[{(i * n + j) * W} + _l]" + (" + _fac" if i == j else ""))
    for k in range(n):
        f += [f"        _m = {float(k)!r}", f"        _big = abs({a(k, k)})"]
        for i in range(k + 1, n):
            f += [f"        _v = abs({a(i, k)})", "        _c = _v > _big", "        _big = select(_c, _v, _big)",
                  f"        _m = select(_c, {float(i)!r}, _m)"]
        f += [f"        A[{(n * n + k) * W} + _l] = _m", "        _ok = _ok & (_big != 0.0) & (_big == _big)"]
        if k + 1 < n:
            # which row comes up, computed once per step (a comparison per entry doubled the source numba types)
            f += [f"        _s{i} = _m == {float(i)!r}" for i in range(k + 1, n)]
            for j in range(n):
                f.append(f"        _t = {a(k, j)}")
                for i in range(k + 1, n):
                    f.append(f"        {a(k, j)} = select(_s{i}, {a(i, j)}, {a(k, j)})")
                for i in range(k + 1, n):
                    f.append(f"        {a(i, j)} = select(_s{i}, _t, {a(i, j)})")
        f.append(f"        {a(k, k)} = 1.0 / {a(k, k)}")
        for i in range(k + 1, n):
            f.append(f"        {a(i, k)} = {a(i, k)} * {a(k, k)}")
            for j in range(k + 1, n):
                f.append(f"        {a(i, j)} = {a(i, j)} - {a(i, k)} * {a(k, j)}")
    for i in range(n):
        for j in range(n):
            f.append(f"        A[{(i * n + j) * W} + _l] = {a(i, j)}")
    f.append(f"        A[{(n * n + n) * W} + _l] = select(_ok, 1.0, 0.0)")

    g = ['@njit(cache=True, error_model="numpy")', "def lu_solve_lanes(A, B, _w):", "    for _l in range(_w):"]
    g += [f"        _b{i} = B[{i * W} + _l]" for i in range(n)]
    for k in range(n - 1):
        g += [f"        _m = A[{(n * n + k) * W} + _l]", f"        _t = _b{k}"]
        g += [f"        _b{k} = select(_m == {float(i)!r}, _b{i}, _b{k})" for i in range(k + 1, n)]
        g += [f"        _b{i} = select(_m == {float(i)!r}, _t, _b{i})" for i in range(k + 1, n)]
    for j in range(n):
        for i in range(j + 1, n):
            g.append(f"        _b{i} = _b{i} - A[{(i * n + j) * W} + _l] * _b{j}")
    for j in range(n - 1, -1, -1):
        g.append(f"        _b{j} = _b{j} * A[{(j * n + j) * W} + _l]")
        for i in range(j):
            g.append(f"        _b{i} = _b{i} - A[{(i * n + j) * W} + _l] * _b{j}")
    g += [f"        B[{i * W} + _l] = _b{i}" for i in range(n)]
    return "\n".join(f + ["    return", "", ""] + g + ["    return"]) + "\n"
