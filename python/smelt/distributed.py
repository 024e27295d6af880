"""Sharded runs on a Dask cluster: the shards of ``verify`` and ``escape`` submitted as
tasks, their parts gathered and merged (:func:`smelt.merge`).

    >>> from dask.distributed import Client, LocalCluster
    >>> import smelt.distributed
    >>> with LocalCluster(n_workers=4, threads_per_worker=1) as cluster, Client(cluster) as client:
    ...     result = smelt.distributed.verify(client, "examples/sgd.opt",
    ...                                       "examples/problems/quadratic.prob",
    ...                                       shards=4, paths=100_000, threads=1)

The result is the single run's (``smelt.verify(..., budget=0)`` with the same seed), bit
for bit: each shard runs its range of the run's blocks of paths on the run's own
jump-ahead streams, sums exactly, and the merge rounds once. Dask only runs the tasks;
the numbers do not depend on which worker runs which shard, nor on their order.

Rules and problems given as paths are read by the workers: on a cluster without a shared
file system, pass their texts. ``threads`` is each shard's thread count (default: all
the worker machine's cores; with several workers per machine, give ``threads=1`` or the
cores per worker).
"""


def _verify_shard(rule, problem, k, n, kwargs):
    from ._verify import verify as run

    return run(rule, problem, shard=(k, n), **kwargs)


def _escape_shard(rule, problem, region, k, n, kwargs):
    from ._escape import escape as run

    return run(rule, problem, region, shard=(k, n), **kwargs)


def _gather(client, futures):
    from ._merge import merge

    return merge(client.gather(futures))


def verify(client, rule, problem, shards, **kwargs):
    """:func:`smelt.verify` split into ``shards`` tasks on the Dask ``client``'s cluster
    and merged: a :class:`smelt.VerifyResult` equal to the single run's (``budget=0``:
    a sharded run runs the grid as given)."""
    if kwargs.get("budget"):
        raise ValueError("a sharded verify runs the grid as given: leave out budget (compare with budget=0)")
    kwargs.pop("budget", None)
    futures = [
        client.submit(_verify_shard, rule, problem, k, shards, kwargs, pure=False)
        for k in range(1, shards + 1)
    ]
    return _gather(client, futures)


def escape(client, rule, problem, region, shards, **kwargs):
    """:func:`smelt.escape` split into ``shards`` tasks on the Dask ``client``'s cluster
    and merged: a :class:`smelt.EscapeResult` equal to the single run's."""
    futures = [
        client.submit(_escape_shard, rule, problem, region, k, shards, kwargs, pure=False)
        for k in range(1, shards + 1)
    ]
    return _gather(client, futures)
