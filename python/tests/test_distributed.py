"""Sharded runs on a Dask cluster of worker processes (smelt.distributed) against the
single run, and smelt.merge's refusals.

What makes the two sides independent: the single run folds every block of paths in this
process; the shards run in four separate worker processes of a local Dask cluster, each
over its own range of blocks, and meet only through their JSON parts, merged here. The
two documents are compared whole, only the wall-clock ``seconds`` left out.
"""

import json

import pytest

import smelt

distributed = pytest.importorskip("dask.distributed")
import smelt.distributed  # noqa: E402


def without_clock(doc):
    doc = json.loads(json.dumps(doc))
    doc["run"].pop("seconds", None)
    for r in doc.get("results", []):
        r.pop("seconds", None)
    return doc


@pytest.fixture(scope="module")
def client():
    # Four worker processes of one thread each: the shards run in other processes.
    with distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_verify_over_four_workers_is_the_single_run_bit_for_bit(root, client):
    rule, problem = str(root / "examples/sgd.opt"), str(root / "examples/problems/quadratic.prob")
    args = dict(orders=(1, 2), etas=[2**-3, 2**-4, 2**-5], paths=3000, seed=11, threads=1)
    single = smelt.verify(rule, problem, budget=0, **args)
    merged = smelt.distributed.verify(client, rule, problem, shards=4, **args)
    # The workers are other processes.
    pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 4 and __import__("os").getpid() not in pids
    assert without_clock(merged.json) == without_clock(single.json)
    # Bit for bit: the numbers as text (shortest round-trip form) are the same.
    assert json.dumps(without_clock(merged.json), sort_keys=True) == json.dumps(without_clock(single.json), sort_keys=True)
    assert merged.json["run"]["paths"] == 3072
    # Another seed gives other numbers: the comparison can fail.
    other = smelt.verify(rule, problem, budget=0, **{**args, "seed": 12})
    assert without_clock(other.json) != without_clock(single.json)


def test_escape_over_four_workers_is_the_single_run(root, client):
    rule, problem = str(root / "examples/sgd.opt"), str(root / "examples/problems/saddle.prob")
    args = dict(models="sgd,sme1", etas=[0.1, 0.05], paths=3000, seed=5, threads=1)
    single = smelt.escape(rule, problem, "ball 1", **args)
    merged = smelt.distributed.escape(client, rule, problem, "ball 1", shards=4, **args)
    assert without_clock(merged.json) == without_clock(single.json)
    assert merged.exited["SGD"][0] == 3000


def test_merge_refuses_parts_that_are_not_one_run(root):
    rule, problem = root / "examples/sgd.opt", root / "examples/problems/quadratic.prob"
    args = dict(orders=(1,), etas=[2**-3], paths=512, threads=1)
    p1 = smelt.verify(rule, problem, shard=(1, 2), **args)
    p2 = smelt.verify(rule, problem, shard=(2, 2), **args)
    other = smelt.verify(rule, problem, shard=(2, 2), seed=9, **args)
    assert smelt.merge([p2, p1]).json["run"]["paths"] == 512
    with pytest.raises(ValueError, match="shard is 2/2 missing"):
        smelt.merge([p1])
    with pytest.raises(ValueError, match="both shard 1/2"):
        smelt.merge([p1, p1, p2])
    with pytest.raises(ValueError, match="seed"):
        smelt.merge([p1, other])
    with pytest.raises(ValueError, match="budget"):
        smelt.verify(rule, problem, shard=(1, 2), budget=10, **args)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        smelt.verify(rule, problem, shard=(3, 2), **args)
