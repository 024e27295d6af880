"""smelt.verify against `smelt verify` on the same run (issue 20: the CLI's path-steps
per second). Run with the package installed and the CLI built in release:

    v/bin/python python/bench/bench_verify.py target/release/smelt
"""

import json
import statistics
import subprocess
import sys
import time

import smelt

RULE, PROBLEM = "examples/sgd.opt", "examples/problems/double_well.prob"
ARGS = dict(orders=(1, 2), paths=262144, budget=0, seed=1)


def main(cli, runs=6):
    # Interleaved runs, medians and minima: on this 2-core machine one run's time varies
    # by 10-15%, so best-of-3 in two blocks can show a gap that is not there.
    py, cl = [], []
    for _ in range(runs):
        t = time.perf_counter()
        res = smelt.verify(RULE, PROBLEM, **ARGS)
        py.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run([cli, "verify", RULE, "--problem", PROBLEM, "--orders", "1,2", "--paths",
                              str(ARGS["paths"]), "--budget", "0", "--format", "json", "-q"],
                             capture_output=True, text=True)
        cl.append(time.perf_counter() - t)
    used = res.json["run"]["extension"]["used"]
    same = json.loads(out.stdout)["series"] == res.json["series"]
    print(f"SGD on the double well, orders 1 and 2, {ARGS['paths']} paths, {used / 1e6:.1f} M path-steps, {runs} interleaved runs:")
    for name, ts in [("smelt.verify", py), ("smelt verify", cl)]:
        med = statistics.median(ts)
        print(f"  {name}  median {med:6.2f} s ({used / med / 1e6:5.1f} M path-steps/s), min {min(ts):6.2f} s")
    print(f"  ratio of medians {statistics.median(py) / statistics.median(cl):.2f} (the CLI's includes its process start); same series: {same}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/release/smelt")
