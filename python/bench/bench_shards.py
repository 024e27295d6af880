"""A verify split over a local Dask cluster against the single run (issue 21). Run with
the package installed (release) and Dask's `distributed`:

    v/bin/python python/bench/bench_shards.py [paths] [runs]

Per run, interleaved: `smelt.verify(..., budget=0)` in this process (all cores), then
`smelt.distributed.verify` over a LocalCluster of 4 worker processes of one thread each
(`threads=1` per shard; the cluster is started once, before the runs), wall time around
each call, and the merged JSON checked against the single run's (all but `run.seconds`).
"""

import json
import statistics
import sys
import time

from dask.distributed import Client, LocalCluster

import smelt
import smelt.distributed

RULE, PROBLEM = "examples/sgd.opt", "examples/problems/double_well.prob"


def without_clock(doc):
    doc = json.loads(json.dumps(doc))
    doc["run"].pop("seconds", None)
    return doc


def main():
    paths = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    single_t, split_t, merge_t = [], [], []
    with LocalCluster(n_workers=4, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        for _ in range(runs):
            t = time.perf_counter()
            single = smelt.verify(RULE, PROBLEM, paths=paths, budget=0)
            single_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            futures = [client.submit(smelt.distributed._verify_shard, RULE, PROBLEM, k, 4,
                                     {"paths": paths, "threads": 1}, pure=False) for k in range(1, 5)]
            parts = client.gather(futures)
            t_parts = time.perf_counter()
            merged = smelt.merge(parts)
            t_end = time.perf_counter()
            split_t.append(t_end - t)
            merge_t.append(t_end - t_parts)
            assert without_clock(merged.json) == without_clock(single.json), "merged differs"
    med = statistics.median
    print(f"{paths} paths, {runs} runs, medians (min): single {med(single_t):.2f} s ({min(single_t):.2f}), "
          f"4 Dask workers {med(split_t):.2f} s ({min(split_t):.2f}), of which merge {med(merge_t) * 1000:.0f} ms; "
          "merged JSON = single run's")


if __name__ == "__main__":
    main()
