"""smelt.verify against `smelt verify` on the same run (issue 20: the CLI's path-steps
per second). Run with the package installed (release) and the CLI built in release:

    v/bin/python python/bench/bench_verify.py target/release/smelt [runs]

Three clocks per run, interleaved: wall time around the call (the CLI's includes its
process start and its derivation); the run's own `run.seconds` from the JSON (the
simulation alone, timed inside the library the same way for both); and CPU time (user +
system, of this process for the package and of the child for the CLI), which does not
count the time the VM's cores were taken away, the main source of this machine's
10-15% run-to-run spread.
"""

import json
import resource
import statistics
import subprocess
import sys
import time

import smelt

RULE, PROBLEM = "examples/sgd.opt", "examples/problems/double_well.prob"
ARGS = dict(orders=(1, 2), paths=262144, budget=0, seed=1)


def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main(cli, runs=10):
    clocks = {"smelt.verify": ([], [], []), "smelt verify": ([], [], [])}
    cmd = [cli, "verify", RULE, "--problem", PROBLEM, "--orders", "1,2", "--paths", str(ARGS["paths"]),
           "--budget", "0", "--format", "json", "-q"]
    for _ in range(runs):
        wall, c = time.perf_counter(), cpu(resource.RUSAGE_SELF)
        res = smelt.verify(RULE, PROBLEM, **ARGS)
        py = clocks["smelt.verify"]
        py[0].append(time.perf_counter() - wall)
        py[1].append(res.json["run"]["seconds"])
        py[2].append(cpu(resource.RUSAGE_SELF) - c)
        wall, c = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        doc = json.loads(out.stdout)
        cl = clocks["smelt verify"]
        cl[0].append(time.perf_counter() - wall)
        cl[1].append(doc["run"]["seconds"])
        cl[2].append(cpu(resource.RUSAGE_CHILDREN) - c)
    used = res.json["run"]["extension"]["used"]
    same = doc["series"] == res.json["series"]
    print(f"SGD on the double well, orders 1 and 2, {ARGS['paths']} paths, {used / 1e6:.1f} M path-steps, "
          f"{runs} interleaved runs; medians (minima):")
    print(f"  {'':14} {'wall':>16} {'run.seconds':>16} {'CPU time':>16}   M path-steps/s (run.seconds)")
    for name, ts in clocks.items():
        cells = " ".join(f"{statistics.median(t):7.3f} ({min(t):6.3f})" for t in ts)
        print(f"  {name:14} {cells}   {used / statistics.median(ts[1]) / 1e6:6.1f}")
    ratio = [statistics.median(p) / statistics.median(c) for p, c in zip(*clocks.values())]
    print("  ratio package/CLI of the medians: wall {:.3f}, run.seconds {:.3f}, CPU {:.3f}".format(*ratio))
    print(f"  same series: {same}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/release/smelt",
         int(sys.argv[2]) if len(sys.argv) > 2 else 10)
