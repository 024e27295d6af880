"""Chebyshev coefficients of (z + K) erfcx(z) on z >= 0 in u = (z - K)/(z + K).

The fast normal distribution function of the tapes (src/numeric/vmath.rs) evaluates
erfc(z) = exp(-z^2) * sum_k c_k T_k(u) / (z + K) by Clenshaw's recurrence
(erfcx(z) = exp(z^2) erfc(z); the factor z + K keeps the sum between 1/sqrt(pi) and K,
so that its rounding errors stay relative) (Schonfelder's
mapping, Math. Comp. 32, 1978). This script computes the c_k with mpmath at 40 digits
from N = 60 Chebyshev nodes and prints the first 25 (|c_k| < 1e-17 beyond) as Rust
literals, c_0 halved. Run: .venv/bin/python scripts/fit_erfcx.py
"""

import mpmath as mp

mp.mp.dps = 40
K = mp.mpf(4)
N = 60
KEEP = 25

nodes = [mp.cos(mp.pi * (j + mp.mpf(1) / 2) / N) for j in range(N)]
values = []
for u in nodes:
    z = K * (1 + u) / (1 - u)
    values.append(mp.erfc(z) * mp.exp(z * z) * (z + K))
coef = [
    2 * mp.fsum(values[j] * mp.cos(mp.pi * k * (j + mp.mpf(1) / 2) / N) for j in range(N)) / N
    for k in range(N)
]
coef[0] /= 2
assert all(abs(c) < mp.mpf("1e-17") for c in coef[KEEP:]), "raise KEEP"
for c in coef[:KEEP]:
    print(f"    {float(c)!r},")
