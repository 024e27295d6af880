"""An independent derivation, in SymPy, of the SMEs of rules that evaluate the gradient
at a point that moves with x (stochastic extragradient, SAM), checked against smelt.

Usage: python shifted_points.py RULE ORDER DIM EXPORTED_SCRIPT [poly]

RULE is `extragradient`, `sam`, `sam_sqrt`, `sgld`, `normalized_sgd` or `sam_normalized`
(the rules of examples/*.opt) or `sam_noise_at_y` (SAM with the same noise sample at the
perturbed point), ORDER the
weak order p, DIM 1 or 2, and EXPORTED_SCRIPT the output of
`smelt derive examples/RULE.opt --order ORDER --format sympy --dim DIM`. With `poly`
(d = 2 only), f is a polynomial with symbolic coefficients instead of a generic
function.

Nothing here comes from smelt but the result it is compared with. One-step moment
matching by hand:

1. The step Delta = x' - x of the rule is expanded in the small parameter eps through
   eps^K, K = (p + 1) q - 1 for one step = time tau = eps^q: f is a generic `Function`
   (of x, or of x1, x2) and grad f(x + delta(x)) its Taylor series at x with the shift
   delta held fixed (the derivatives are those of f alone); or, with `poly` in d = 2, f
   is a quartic polynomial with symbolic coefficients and grad f(x + delta) is computed
   exactly by substitution, so no Taylor formula is involved at all.
2. The discrete moments E[Delta^s], s = 1..p, are averaged over the Gaussian noise: in
   d = 1 xi = sqrt(Sigma(x)) w with Sigma a generic function (sqrt(Sigma(y)) w, Sigma(y)
   its Taylor series, for the sample at a point y), in d = 2 xi = A w with A a
   constant lower-triangular matrix of symbols (Sigma = A A^T), w standard normal;
   E w^k is (k - 1)!! for even k and 0 for odd k.
3. The SDE's moments come from the generator series
   E psi(Z_tau) = sum_{m <= p} tau^m/m! L^m psi,  L = b.grad + (1/2) a : grad^2,
   psi(z) = (z - x)^s, with drift b = sum_j eps^j b_j and diffusion a = sum_j eps^j a_j.
4. Order by order in eps, the eps^k coefficient of E[Delta] - M_1 fixes b_{k-q} and that
   of E[Delta^2] - M_2 fixes a_{k-q} (the lower coefficients are already known); at the
   end every moment s = 1..p must agree through eps^K (the third moment is a check).
5. The drift and diffusion found are compared with smelt's: the differences must expand
   to zero.

A norm ||v|| (normalized SGD, normalized SAM) is expanded around ||grad f(x)||, a symbol
`nrm` (d nrm/dx_i = sum_j f_j f_ji / nrm): ||v||^-k = sum_j binom(-k/2, j) delta^j
nrm^(-k-2j) with delta = ||v||^2 - nrm^2 of order eps; nrm is put back as the square root
of the sum of squares before the comparison.
"""

import itertools
import runpy
import sys

import sympy as sp

RULE, ORDER, DIM, EXPORTED = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
POLY = sys.argv[5:] == ['poly']
assert not POLY or DIM == 2

# The rules: the small parameter's name, the power q of tau = eps^q, and the step as a
# function of (grad, x, xi, eps, r): grad(point) is grad f at a point, xi(point) the
# step's noise sample at a point.
RULES = {
    # x' = x - h^2 (grad f(x - h grad f(x)) + xi), time h^2
    'extragradient': ('h', 2, lambda grad, x, xi, e, r: -e**2 * (grad(x - e * grad(x)) + xi(x))),
    # x' = x - eta (grad f(x + r eta grad f(x)) + xi), time eta
    'sam': ('eta', 1, lambda grad, x, xi, e, r: -e * (grad(x + r * e * grad(x)) + xi(x))),
    # y = x + r eta grad f(x), x' = x - eta (grad f(y) + xi(y)), time eta
    'sam_noise_at_y': ('eta', 1, lambda grad, x, xi, e, r:
                       -e * (grad(x + r * e * grad(x)) + xi(x + r * e * grad(x)))),
    # x' = x - h^2 (grad f(x + r h grad f(x)) + xi), time h^2
    'sam_sqrt': ('h', 2, lambda grad, x, xi, e, r: -e**2 * (grad(x + r * e * grad(x)) + xi(x))),
    # SGLD (examples/sgld.opt): x' = x - h^2 (grad f(x) + xi) + h z, z ~ N(0, 2T I)
    # independent of xi, time h^2 (INJECTED: standard normals of its own)
    'sgld': ('h', 2, lambda grad, x, xi, e, r:
             -e**2 * (grad(x) + xi(x)) + e * sp.sqrt(2 * TEMP) * sp.Matrix(INJECTED)),
    # normalized SGD with a batch that grows as the step shrinks (examples/normalized_sgd.opt):
    # g = grad f(x) + s h xi, x' = x - h^2 g/||g||, time h^2
    'normalized_sgd': ('h', 2, lambda grad, x, xi, e, r:
                       -e**2 * (grad(x) + S * e * xi(x)) * norm_inv(grad(x) + S * e * xi(x))),
    # SAM with the normalized exact ascent (examples/sam_normalized.opt), rho = r h:
    # x' = x - h^2 (grad f(x + r h grad f(x)/||grad f(x)||) + xi), time h^2
    'sam_normalized': ('h', 2, lambda grad, x, xi, e, r:
                       -e**2 * (grad(x + r * e * grad(x) * norm_inv(grad(x))) + xi(x))),
    # extragradient with independent samples (examples/extragradient_two_samples.opt):
    # y = x - h (grad f(x) + xi), x' = x - h^2 (grad f(y) + zeta(y)), time h^2
    'extragradient_two_samples': ('h', 2, lambda grad, x, xi, e, r:
                                  -e**2 * (grad(x - e * (grad(x) + xi(x)))
                                           + zeta_at(list(x - e * (grad(x) + xi(x)))))),
}
# The noise scale of normalized SGD's batch.
S = sp.Symbol('s', positive=True)
# ||grad f(x)||
NRM = sp.Symbol('nrm', positive=True)
# The temperature of SGLD and the injected noise's standard normals (one per coordinate).
TEMP = sp.Symbol('T', positive=True)
INJECTED = sp.symbols('v1:%d' % (DIM + 1))

small_name, q, step = RULES[RULE]
eps = sp.Symbol(small_name, positive=True)
r = sp.Symbol('r', positive=True)
p = ORDER
K = (p + 1) * q - 1


def trunc(e, k=K):
    """The series e in eps through eps^k (e a polynomial in eps)."""
    e = sp.expand(e)
    return sp.Add(*[e.coeff(eps, j) * eps**j for j in range(k + 1)])


def coeff(e, k):
    return sp.expand(e).coeff(eps, k)


def double_factorial_moment(k):
    """E w^k for a standard normal w."""
    if k % 2:
        return 0
    out = 1
    for i in range(k - 1, 0, -2):
        out *= i
    return out


def gauss_expect(e, ws):
    """E over independent standard normals ws of a polynomial in them."""
    poly = sp.Poly(sp.expand(e), *ws)
    out = 0
    for monom, c in poly.terms():
        m = 1
        for k in monom:
            m *= double_factorial_moment(k)
        out += c * m
    return sp.expand(out)


# ---------------------------------------------------------------------------------------
# Derivatives of f (and of Sigma in d = 1) are plain symbols, a jet f_a_b = d1^a d2^b f,
# differentiated by the chain rule: SymPy is far faster on polynomials in symbols than
# on `Derivative` objects. smelt's exported expressions are put in the same form.
JET = {}


def jet(name, alpha):
    alpha = tuple(alpha)
    sym = sp.Symbol(name + '_' + '_'.join(map(str, alpha)))
    JET[sym] = (name, alpha)
    return sym


def dx(e, i):
    """d/dx_i of e, a polynomial in the x's, the jet's symbols, nrm and constants."""
    out = sp.diff(e, xs[i])
    if NRM in e.free_symbols:
        g0 = grad_at(list(xs))
        out += sp.diff(e, NRM) * sp.expand(sum(g * dx(g, i) for g in g0)) / NRM
    for sym in e.free_symbols & set(JET):
        name, alpha = JET[sym]
        up = list(alpha)
        up[i] += 1
        out += sp.diff(e, sym) * jet(name, up)
    return out


# ---------------------------------------------------------------------------------------
# The problem in d = 1 or 2.
if DIM == 1:
    x = sp.Symbol('x')
    xs = [x]
    w = sp.Symbol('w')
    ws = [w]

    def grad_at(point):
        # Taylor series of f' at x + delta, delta = point - x held fixed, through eps^K;
        # delta is O(eps), so K + 1 terms are enough.
        delta = sp.expand(point[0] - x)
        assert delta.subs(eps, 0) == 0, 'the shift must vanish with eps'
        out = 0
        for j in range(K + 1):
            out += jet('f', (j + 1,)) * delta**j / sp.factorial(j)
        return [trunc(out)]

    # xi(y) = sqrt(Sigma(y)) w: E xi^2 = Sigma(y), E xi^4 = 3 Sigma(y)^2, odd moments 0,
    # Sigma(y) the Taylor series of Sigma at x (y = x: Sigma(x)); one point per rule
    sq = sp.Symbol('sqrtSigma')
    noise_point = []

    def xi_at(point):
        noise_point.append(sp.expand(point[0]))
        return sp.Matrix([sq * w])

    # the second, independent sample zeta(y) = sqrt(Sigma(y)) w2 at its own point y
    w2 = sp.Symbol('w2')
    ws2 = [w2]
    sq2 = sp.Symbol('sqrtSigma2')
    zeta_point = []

    def zeta_at(point):
        zeta_point.append(sp.expand(point[0]))
        return sp.Matrix([sq2 * w2])

    def zeta_subs(e):
        # E over w2 done: sqrtSigma2^2 is Sigma(y), y random (it holds w), a Taylor
        # series at x
        if not zeta_point:
            return e
        (y,) = set(zeta_point)
        shift = sp.expand(y - x)
        sigma_y = trunc(sum(jet('S', (j,)) * shift**j / sp.factorial(j) for j in range(K + 1)))
        return trunc(sp.expand(e).subs({sq2: sp.sqrt(sigma_y)}))

    def noise_subs(e):
        # even powers of sqrtSigma are powers of Sigma(y); odd ones do not survive E
        (y,) = set(noise_point)
        shift = sp.expand(y - x)
        sigma_y = trunc(sum(jet('S', (j,)) * shift**j / sp.factorial(j) for j in range(K + 1)))
        e = sp.expand(e)
        return trunc(e.subs({sq: sp.sqrt(sigma_y)}))

    def convert(name, counts):
        """smelt's f^(k)(x), Sigma^(k)(x) as the jet's symbols."""
        return jet({'f': 'f', 'Sigma': 'S'}[name], counts)
else:
    x1, x2 = sp.symbols('x1 x2')
    xs = [x1, x2]
    # with `poly`, f is a quartic polynomial with symbolic coefficients c_i_j (of x1^i x2^j)
    fpoly = 0
    for i in range(5):
        for j in range(5 - i):
            if i + j >= 1:
                fpoly += sp.Symbol('c_%d_%d' % (i, j)) * x1**i * x2**j
    a11, a21, a22 = sp.symbols('a11 a21 a22', positive=True)
    A = sp.Matrix([[a11, 0], [a21, a22]])
    SigmaM = A * A.T
    w1, w2 = sp.symbols('w1 w2')
    ws = [w1, w2]

    def xi_at(point):
        # Sigma is constant: the sample at any point is A w
        return A * sp.Matrix([w1, w2])

    # the second, independent sample: A v, v standard normal (Sigma constant, so its
    # point does not matter here)
    v1, v2 = sp.symbols('v1 v2')
    ws2 = [v1, v2]

    def zeta_at(point):
        return A * sp.Matrix([v1, v2])

    def zeta_subs(e):
        return e

    def grad_at_poly(point):
        # exact: substitute the point into the gradient polynomial
        sub = {x1: point[0], x2: point[1]}
        return [trunc(sp.expand(fpoly.diff(v).subs(sub, simultaneous=True))) for v in xs]

    def grad_at_generic(point):
        # Taylor series of d_i f at x + delta, delta held fixed:
        # sum_j (1/j!) (delta . grad)^j d_i f, the derivatives those of f alone
        delta = [sp.expand(point[k] - xs[k]) for k in range(2)]
        assert all(dk.subs(eps, 0) == 0 for dk in delta), 'the shift must vanish with eps'
        out = []
        for v in range(2):
            total = 0
            for j in range(K + 1):
                for i1 in range(j + 1):
                    i2 = j - i1
                    alpha = [i1, i2]
                    alpha[v] += 1
                    total += (sp.binomial(j, i1) * delta[0]**i1 * delta[1]**i2
                              / sp.factorial(j) * jet('f', alpha))
            out.append(trunc(total))
        return out

    grad_at = grad_at_poly if POLY else grad_at_generic

    def noise_subs(e):
        return sp.expand(e)

    def convert(name, counts):
        """smelt's derivatives of f (the jet, or the polynomial's) and Sigma_i_j (constant)."""
        if name == 'f':
            if not POLY:
                return jet('f', counts)
            e = fpoly
            for v, c in zip(xs, counts):
                e = e.diff(v, c) if c else e
            return e
        assert name.startswith('Sigma_'), name
        i, j = int(name.split('_')[1]), int(name.split('_')[2])
        return SigmaM[i - 1, j - 1] if not any(counts) else 0


def to_jet(e):
    """An exported expression with f, Sigma and their derivatives in the jet's form."""
    reps = {}
    for d in e.atoms(sp.Derivative):
        counts = [0] * len(xs)
        for v, c in d.variable_count:
            counts[xs.index(v)] += c
        reps[d] = convert(d.expr.func.__name__, counts)
    for a in e.atoms(sp.core.function.AppliedUndef):
        reps.setdefault(a, convert(a.func.__name__, [0] * len(xs)))
    return sp.expand(e.xreplace(reps))


xvec = sp.Matrix(xs)


def norm_inv(v, k=1):
    """||v||^-k through eps^K, around ||grad f(x)|| = nrm (v's leading part)."""
    squares = sp.expand(sum(c**2 for c in v))
    lead = squares.subs(eps, 0)
    g0 = grad_at(list(xs))
    assert sp.expand(lead - sum(g**2 for g in g0)) == 0, 'the leading part must be grad f(x)'
    delta = sp.expand(squares - lead)
    out = 0
    for j in range(K + 1):
        out += sp.binomial(-sp.Rational(k, 2), j) * delta**j * NRM**(-k - 2 * j)
    return trunc(out)


def grad_vec(point):
    return sp.Matrix(grad_at(list(point)))


# ---------------------------------------------------------------------------------------
# 1.-2. The step and its moments.
def grad_fn(point):
    return grad_vec(point)


delta = step(grad_fn, xvec, xi_at, eps, r)
if RULE == 'sgld':
    ws = list(ws) + list(INJECTED)
delta = [trunc(c) for c in delta]
n = len(xs)


def discrete_moment(idx):
    """E[prod_i Delta_{idx_i}] through eps^K."""
    e = 1
    for i in idx:
        e = trunc(e * delta[i])
    # E over the second sample given the first (its law at the random point), then
    # over the first
    e = trunc(zeta_subs(gauss_expect(e, ws2)))
    return trunc(noise_subs(gauss_expect(e, ws)))


# ---------------------------------------------------------------------------------------
# 3. The SDE's moments by the generator series.
# psi(z) = prod (z - x)_i is written in the symbols u_i = z_i - x_i (d/dz_i u_i = 1; the
# drift and diffusion depend on z through the jet); L lowers the degree in u by at most
# 2, so after L^m a term of degree above 2 (applications left) cannot reach u = 0.
us = sp.symbols('u1:%d' % (n + 1))


def u_degree(term):
    powers = term.as_powers_dict()
    return sum(int(powers.get(u, 0)) for u in us)


def keep_u(e, maxdeg):
    return sp.Add(*[t for t in sp.Add.make_args(sp.expand(e)) if u_degree(t) <= maxdeg])


def generator(phi, b, a, kmax):
    """L phi = b.grad phi + (1/2) a : grad^2 phi, through eps^kmax."""
    out = 0
    for i in range(n):
        di = dx(phi, i) + sp.diff(phi, us[i])
        out += b[i] * di
        for j in range(n):
            out += sp.Rational(1, 2) * a[i, j] * (dx(di, j) + sp.diff(di, us[j]))
    return trunc(out, kmax)


def sde_moment(idx, b, a, kmax):
    """E[prod_i (Z_tau - x)_{idx_i}] through eps^kmax, by sum tau^m/m! L^m psi."""
    psi = sp.Integer(1)
    for i in idx:
        psi *= us[i]
    tau = eps**q
    mmax = min(p, kmax // q)
    at_zero = {u: 0 for u in us}
    total = 0
    term = psi
    for m in range(0, mmax + 1):
        if m > 0:
            term = keep_u(generator(term, b, a, kmax - q * m), 2 * (mmax - m))
        total += tau**m / sp.factorial(m) * term.subs(at_zero)
    return trunc(total, kmax)


# ---------------------------------------------------------------------------------------
# 4. Order by order.
D1 = [discrete_moment((i,)) for i in range(n)]
D2 = {(i, j): discrete_moment((i, j)) for i in range(n) for j in range(i, n)}
b = [sp.Integer(0)] * n
a = sp.zeros(n, n)
for k in range(1, K + 1):
    new_b = []
    for i in range(n):
        res = coeff(D1[i] - sde_moment((i,), b, a, k), k)
        if k < q:
            assert sp.expand(res) == 0, ('E[Delta] below tau', k, res)
        new_b.append(res)
    new_a = {}
    for (i, j), d2 in D2.items():
        res = coeff(d2 - sde_moment((i, j), b, a, k), k)
        if k < q:
            assert sp.expand(res) == 0, ('E[Delta^2] below tau', k, res)
        new_a[(i, j)] = res
    if k >= q:
        for i in range(n):
            b[i] = b[i] + new_b[i] * eps**(k - q)
        for (i, j), v in new_a.items():
            a[i, j] = a[i, j] + v * eps**(k - q)
            a[j, i] = a[i, j]

# Every moment s = 1..p now agrees through eps^K (s >= 3: Gaussian noise, nothing to fit).
for s in range(1, p + 1):
    for idx in itertools.combinations_with_replacement(range(n), s):
        res = sp.expand(discrete_moment(idx) - sde_moment(idx, b, a, K))
        assert res == 0, ('moment', idx, 'does not match through eps^%d' % K, res)

# ---------------------------------------------------------------------------------------
# 5. Against smelt.
ns = runpy.run_path(EXPORTED)
assert ns['order'] == p, ('smelt reached order', ns['order'])
assert ns['conditions'] == [], ns['conditions']
s_eps = ns[small_name]
s_r = ns.get('r', r)
assert s_eps == eps and s_r == r, 'the exported symbols are the same SymPy symbols'
assert ns.get('T', TEMP) == TEMP, 'the exported temperature is the same SymPy symbol'
assert ns.get('s', S) == S, 'the exported noise scale is the same SymPy symbol'
# nrm back as the norm of the jet's gradient
nrm_value = sp.sqrt(sp.expand(sum(g**2 for g in grad_at(list(xs)))))
b = [sp.expand(bi.subs(NRM, nrm_value)) for bi in b]
a = a.subs(NRM, nrm_value).applyfunc(sp.expand)
assert sp.simplify(ns['time_step'] - eps**q) == 0, ns['time_step']

if DIM == 1:
    assert ns['x'] == x
    s_b, s_a = [ns['drift']], sp.Matrix([[ns['diffusion']]])
else:
    assert ns['x1'] == x1 and ns['x2'] == x2
    s_b, s_a = list(ns['drift']), ns['diffusion']
for i in range(n):
    d_b = sp.expand(to_jet(s_b[i]) - b[i])
    assert d_b == 0, ('drift differs from the independent derivation', i + 1, d_b)
    for j in range(n):
        # Through eps^(K - q), what order p determines: beyond it smelt shows the leading
        # diffusion that order p + 1 forces where order p leaves it free (checked there).
        d_a = trunc(to_jet(s_a[i, j]) - a[i, j], K - q)
        assert d_a == 0, ('diffusion differs from the independent derivation', (i + 1, j + 1), d_a)

print('independent derivation agrees: %s order %d dim %d%s' % (RULE, p, DIM, ' (polynomial f)' if POLY else ''))
print('drift =', b if DIM == 2 else b[0])
print('diffusion =', a if DIM == 2 else a[0, 0])
