"""What smelt.derive costs above the Rust derivation (issue 20: at most 2 ms for SGD
order 2), and the first access to the SymPy objects. Run with the package installed:

    v/bin/python python/bench/bench_derive.py
"""

import time

import smelt
from smelt import _native

RULE = open("examples/sgd.opt").read()


def best(f, n=200):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main():
    rust = best(lambda: _native.derive(RULE, "<string>", 2, False, None, None))
    call = best(lambda: smelt.derive(RULE, order=2, check=False))
    first = best(lambda: smelt.derive(RULE, order=2, check=False).drift, n=50)
    checked_rust = best(lambda: _native.derive(RULE, "<string>", 2, False, 0x5EED_C4EC, None), n=20)
    checked = best(lambda: smelt.derive(RULE, order=2), n=20)
    print("SGD order 2, best of many calls (ms):")
    print(f"  Rust derivation (smelt._native.derive)      {rust:8.3f}")
    print(f"  smelt.derive                                 {call:8.3f}   (+{call - rust:.3f} above Rust)")
    print(f"  smelt.derive(...).drift (SymPy objects built) {first:8.3f}   (+{first - rust:.3f})")
    print(f"  with the independent check: Rust {checked_rust:.3f}, smelt.derive {checked:.3f} (+{checked - checked_rust:.3f})")


if __name__ == "__main__":
    main()
