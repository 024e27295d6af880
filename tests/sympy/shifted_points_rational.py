"""An independent derivation of the SMEs of rules that evaluate the gradient at a point
that moves with x, in d = 2 at orders the symbolic derivation (shifted_points.py) cannot
reach in minutes: f a quartic polynomial with fixed rational coefficients, Sigma = A A^T
a fixed rational matrix, every quantity a sparse polynomial over the rationals (SymPy's
`ring`), the results compared at x = 0.

Usage: python shifted_points_rational.py RULE ORDER EXPORTED_SCRIPT

RULE is `extragradient`, `sam` or `sam_sqrt` (the rules of examples/*.opt), ORDER the
weak order p, EXPORTED_SCRIPT the output of
`smelt derive examples/RULE.opt --order ORDER --format sympy --dim 2`.

Nothing here comes from smelt but the result it is compared with. One-step moment
matching by hand, as in shifted_points.py:

1. The step Delta = x' - x is formed exactly: grad f at the shifted point is the
   gradient polynomial composed with the point (no Taylor formula), truncated at
   eps^K, K = (p + 1) q - 1, for one step = time tau = eps^q.
2. E[Delta^s] over xi = A w, w standard normal (E w^k = (k - 1)!! for even k, else 0).
3. The SDE's moments by the generator series E psi(Z_tau) = sum_{m <= p} tau^m/m! L^m psi.
4. Order by order in eps: the eps^k coefficient of E[Delta] - M_1 fixes b_{k-q}, that of
   E[Delta^2] - M_2 fixes a_{k-q}; then every moment s = 1..p must agree through eps^K.
5. smelt's drift and diffusion (its derivatives of f taken of the same polynomial) must
   equal the ones found, at x = 0.

Every polynomial is cut above degree NX in x (arithmetic modulo the monomials of higher
degree, which keeps the work small). A product is exact modulo the cut and a derivative
loses one degree. b_j and a_j come from eps^(j+q), where the generator's m >= 2 terms
bring tau^m = eps^(qm) and at most 2m - 1 derivatives onto coefficients of lower order:
at most 3/q degrees per power of eps. The last generator series takes at most 2p more.
So with NX = ceil(3 (K - q) / q) + 2p + 1 everything compared at x = 0 is exact (one
degree to spare). f's coefficients are random, so x = 0 is a generic point.
"""

import itertools
import math
import runpy
import sys

import sympy as sp

RULE, ORDER, EXPORTED = sys.argv[1], int(sys.argv[2]), sys.argv[3]

# small parameter, q (tau = eps^q), the step as a function of (grad, x, xi, eps, r)
RULES = {
    # x' = x - h^2 (grad f(x - h grad f(x)) + xi), time h^2
    'extragradient': ('h', 2, lambda grad, x, xi, e, r: [
        -e**2 * (g + n) for g, n in zip(grad([xk - e * gk for xk, gk in zip(x, grad(x))]), xi)]),
    # x' = x - eta (grad f(x + r eta grad f(x)) + xi), time eta
    'sam': ('eta', 1, lambda grad, x, xi, e, r: [
        -e * (g + n) for g, n in zip(grad([xk + r * e * gk for xk, gk in zip(x, grad(x))]), xi)]),
    # x' = x - h^2 (grad f(x + r h grad f(x)) + xi), time h^2
    'sam_sqrt': ('h', 2, lambda grad, x, xi, e, r: [
        -e**2 * (g + n) for g, n in zip(grad([xk + r * e * gk for xk, gk in zip(x, grad(x))]), xi)]),
}

small, q, step = RULES[RULE]
p = ORDER
K = (p + 1) * q - 1
NX = math.ceil(3 * (K - q) / q) + 2 * p + 1

R, x1, x2, eps, r, w1, w2, u1, u2 = sp.ring(['x1', 'x2', small, 'r', 'w1', 'w2', 'u1', 'u2'], sp.QQ)
X, E, W, U = (0, 1), 2, (4, 5), (6, 7)
xs, ws, us = [x1, x2], [w1, w2], [u1, u2]
n = 2


def cut(poly, k=K):
    """poly through eps^k, modulo the monomials of degree above NX in x."""
    return R({m: c for m, c in poly.items() if m[E] <= k and m[0] + m[1] <= NX})


def coeff(poly, k):
    """The coefficient of eps^k."""
    out = {}
    for m, c in poly.items():
        if m[E] == k:
            m2 = list(m)
            m2[E] = 0
            out[tuple(m2)] = c
    return R(out)


def at_zero(poly, idx):
    """poly with the variables at positions idx set to zero."""
    return R({m: c for m, c in poly.items() if all(m[i] == 0 for i in idx)})


# f: a quartic with fixed small rationals of both signs (a linear congruential sequence)
state = [12345]


def rational():
    state[0] = (1103515245 * state[0] + 12345) % 2**31
    return sp.Rational(state[0] % 19 - 9, 1 + state[0] // 19 % 4)


f = R(0)
f_expr = 0
X1, X2 = sp.symbols('x1 x2')
for i in range(5):
    for j in range(5 - i):
        if i + j >= 1:
            c = rational()
            f += R(c) * x1**i * x2**j
            f_expr += c * X1**i * X2**j
A = [[sp.Rational(3, 2), 0], [sp.Rational(-1, 3), sp.Rational(5, 4)]]
SIGMA = [[sum(A[i][k] * A[j][k] for k in range(2)) for j in range(2)] for i in range(2)]
grad_f = [f.diff(x1), f.diff(x2)]


def grad(point):
    """grad f at a point (polynomials), exactly, then cut."""
    return [cut(g.compose([(x1, point[0]), (x2, point[1])])) for g in grad_f]


xi = [R(A[i][0]) * w1 + R(A[i][1]) * w2 for i in range(2)]
delta = [cut(d) for d in step(grad, xs, xi, eps, r)]


def normal_moment(k):
    return 0 if k % 2 else math.prod(range(k - 1, 0, -2))


def discrete_moment(idx):
    """E[prod Delta_i] over w."""
    prod = R(1)
    for i in idx:
        prod = cut(prod * delta[i])
    out = {}
    for m, c in prod.items():
        weight = normal_moment(m[W[0]]) * normal_moment(m[W[1]])
        if weight:
            m2 = list(m)
            m2[W[0]] = m2[W[1]] = 0
            m2 = tuple(m2)
            out[m2] = out.get(m2, 0) + c * weight
    return R(out)


def u_degree(m):
    return m[U[0]] + m[U[1]]


def generator(phi, b, a, kmax, maxdeg):
    """L phi = b.grad phi + (1/2) a : grad^2 phi (grad in x and u together)."""
    d = [phi.diff(xs[i]) + phi.diff(us[i]) for i in range(n)]
    out = R(0)
    for i in range(n):
        out += cut(b[i] * d[i], kmax)
        for j in range(n):
            dij = d[i].diff(xs[j]) + d[i].diff(us[j])
            out += cut(R(sp.Rational(1, 2)) * a[i][j] * dij, kmax)
    return R({m: c for m, c in out.items() if u_degree(m) <= maxdeg})


def sde_moment(idx, b, a, kmax):
    """E[prod (Z_tau - x)_i] through eps^kmax by sum tau^m/m! L^m psi."""
    psi = R(1)
    for i in idx:
        psi *= us[i]
    mmax = min(p, kmax // q)
    total = R(0)
    term = psi
    for m in range(mmax + 1):
        if m > 0:
            term = generator(term, b, a, kmax - q * m, 2 * (mmax - m))
        total += cut(eps**(q * m) * at_zero(term, U) * R(sp.Rational(1, math.factorial(m))), kmax)
    return total


D1 = [discrete_moment((i,)) for i in range(n)]
D2 = {(i, j): discrete_moment((i, j)) for i in range(n) for j in range(i, n)}
b = [R(0)] * n
a = [[R(0)] * n for _ in range(n)]
for k in range(1, K + 1):
    new_b = [coeff(D1[i] - sde_moment((i,), b, a, k), k) for i in range(n)]
    new_a = {ij: coeff(d2 - sde_moment(ij, b, a, k), k) for ij, d2 in D2.items()}
    if k < q:
        assert all(v == 0 for v in new_b + list(new_a.values())), ('moments below tau', k)
        continue
    for i in range(n):
        b[i] = b[i] + new_b[i] * eps**(k - q)
    for (i, j), v in new_a.items():
        a[i][j] = a[i][j] + v * eps**(k - q)
        a[j][i] = a[i][j]

# Every moment s = 1..p agrees at x = 0 through eps^K (s >= 3: nothing was fitted).
for s in range(1, p + 1):
    for idx in itertools.combinations_with_replacement(range(n), s):
        res = at_zero(discrete_moment(idx) - sde_moment(idx, b, a, K), X)
        assert res == 0, ('moment', idx, 'does not match through eps^%d' % K, res)

# ---------------------------------------------------------------------------------------
# Against smelt: its derivatives of f are taken of the same polynomial, Sigma_i_j(x) is
# SIGMA, the symbols are matched by name.
ns = runpy.run_path(EXPORTED)
assert ns['order'] == p, ('smelt reached order', ns['order'])
assert ns['conditions'] == [], ns['conditions']
assert sp.simplify(ns['time_step'] - ns[small]**q) == 0, ns['time_step']


def to_ring(e):
    reps = {}
    for d in e.atoms(sp.Derivative):
        counts = {X1: 0, X2: 0}
        for v, c in d.variable_count:
            counts[sp.Symbol(v.name)] += c
        if d.expr.func.__name__.startswith('Sigma_'):
            reps[d] = 0  # Sigma is constant
            continue
        assert d.expr.func.__name__ == 'f', d
        reps[d] = sp.diff(f_expr, X1, counts[X1], X2, counts[X2])
    for fn in e.atoms(sp.core.function.AppliedUndef):
        name = fn.func.__name__
        if name == 'f':
            reps.setdefault(fn, f_expr)
        else:
            assert name.startswith('Sigma_'), name
            i, j = int(name.split('_')[1]), int(name.split('_')[2])
            reps.setdefault(fn, SIGMA[i - 1][j - 1])
    e = e.xreplace(reps)
    by_name = {s.name: g for s, g in zip(R.symbols, R.gens)}
    e = e.xreplace({s: sp.Symbol(s.name) for s in e.free_symbols})
    return R(sp.expand(e).xreplace({sp.Symbol(k): s for k, s in zip(by_name, R.symbols)}))


s_b = list(ns['drift'])
s_a = ns['diffusion']
for i in range(n):
    d_b = at_zero(to_ring(s_b[i]) - b[i], X)
    assert d_b == 0, ('drift differs from the independent derivation', i + 1, d_b)
    for j in range(n):
        d_a = at_zero(to_ring(s_a[i, j]) - a[i][j], X)
        assert d_a == 0, ('diffusion differs from the independent derivation', (i + 1, j + 1), d_a)

print('independent derivation agrees: %s order %d dim 2 (rational quartic f, at x = 0, cut at degree %d)'
      % (RULE, p, NX))
print('drift at 0 =', [at_zero(bi, X) for bi in b])
print('diffusion at 0 =', [[at_zero(aij, X) for aij in row] for row in a])
