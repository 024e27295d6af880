"""smelt.verify against `smelt verify` on the same run (issue 20: the CLI's path-steps
per second). Run with the package installed and the CLI built in release:

    v/bin/python python/bench/bench_verify.py target/release/smelt
"""

import json
import subprocess
import sys
import time

import smelt

RULE, PROBLEM = "examples/sgd.opt", "examples/problems/double_well.prob"
ARGS = dict(orders=(1, 2), paths=262144, budget=0, seed=1)


def main(cli):
    best_py = best_cli = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        res = smelt.verify(RULE, PROBLEM, **ARGS)
        best_py = min(best_py, time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run([cli, "verify", RULE, "--problem", PROBLEM, "--orders", "1,2", "--paths",
                              str(ARGS["paths"]), "--budget", "0", "--format", "json", "-q"],
                             capture_output=True, text=True)
        best_cli = min(best_cli, time.perf_counter() - t)
    used = res.json["run"]["extension"]["used"]
    same = json.loads(out.stdout)["series"] == res.json["series"]
    print(f"SGD on the double well, orders 1 and 2, {ARGS['paths']} paths, {used / 1e6:.1f} M path-steps:")
    print(f"  smelt.verify  {best_py:6.2f} s  {used / best_py / 1e6:6.1f} M path-steps/s")
    print(f"  smelt verify  {best_cli:6.2f} s  {used / best_cli / 1e6:6.1f} M path-steps/s (process included)")
    print(f"  ratio {best_py / best_cli:.2f}; same series: {same}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/release/smelt")
