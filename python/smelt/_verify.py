"""Weak-error checks: the optimizer and its SMEs simulated side by side."""

import json

import numpy as np

from . import _native
from ._plot import loglog
from ._source import directory, read

# The per-step-size columns of a series, as arrays.
_COLUMNS = (
    "eta", "tau", "steps", "error", "std_err", "discretization", "discretization_se",
    "coupling_gain", "resolved",
)


class Series:
    """One SME order against one test function: the weak errors per step size (NumPy
    arrays ``eta``, ``tau``, ``error``, ``std_err``, …), the fitted slope with its 95%
    half-width, and the verdict (``status``: confirmed, contradicted or undetermined),
    the same as the CLI's table, JSON and plot."""

    def __init__(self, data):
        self.data = data
        points = data["points"]
        for column in _COLUMNS:
            values = [p.get(column) for p in points]
            dtype = bool if column == "resolved" else float
            setattr(self, column, np.array([np.nan if v is None else v for v in values], dtype=dtype))
        self.order = data["order"]
        self.observable = data["observable"]
        self.slope = data.get("slope")
        self.half_width = data.get("half_width")
        self.local_slopes = np.array(data.get("local_slopes") or [], dtype=float)
        self.status = data["status"]
        self.verdict = data["verdict"]
        self.passed = data["pass"]

    def __repr__(self):
        return f"<Series order {self.order} · φ = {self.observable}: {self.verdict}>"


class VerifyResult:
    """The result of :func:`verify`: ``series`` (one :class:`Series` per order and test
    function), ``contradicted``, and ``json``, the document ``smelt verify --format
    json`` prints for the same arguments (the same numbers; only ``run.seconds``, the
    wall-clock time, differs)."""

    def __init__(self, document):
        self.json = json.loads(document)
        self.series = [Series(s) for s in self.json["series"]]
        self.contradicted = self.json["contradicted"]

    def to_pandas(self):
        """One row per series and step size (needs pandas)."""
        import pandas as pd

        rows = []
        for s in self.series:
            for i in range(len(s.eta)):
                row = {"order": s.order, "observable": s.observable}
                row.update({c: getattr(s, c)[i] for c in _COLUMNS})
                row["status"] = s.status
                rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, ax=None):
        """|weak error| against the time per step on log–log axes, with 2-s.e. bars, one
        line per series labelled with its verdict (needs matplotlib)."""
        def line(s):
            ok = s.resolved & np.isfinite(s.error)
            label = f"order {s.order} · {s.observable}: {s.verdict.split(':')[0]}"
            return s.tau[ok], np.abs(s.error[ok]), s.std_err[ok], label

        return loglog(ax, [line(s) for s in self.series], "time per step τ",
                      "|E φ(optimizer) − E φ(SME)|", f"{self.json['optimizer']} on {self.json['problem']}")

    def __repr__(self):
        return "<VerifyResult " + "; ".join(f"order {s.order} · {s.observable}: {s.status}" for s in self.series) + ">"


def verify(rule, problem, orders=(1, 2), etas=None, paths=65536, seed=1, exact=False,
           substeps=8, budget=None, antithetic=False, threads=None, set=None, time_steps=None,
           shard=None):
    """``smelt verify``: simulates the optimizer and its SMEs of ``orders`` side by side on
    ``problem`` (text, or a path to a ``.prob`` file) and fits the weak errors' slopes.
    The arguments are the CLI's options. The GIL is released while it runs, and Ctrl-C
    interrupts it (KeyboardInterrupt).

    ``shard=(k, n)`` runs shard k of n (``--shard k/n``) and returns its part, the JSON
    text the CLI prints, for :func:`smelt.merge` (the grid as given: no ``budget``)."""
    text, name = read(rule)
    ptext, pname = read(problem)
    document = _native.verify(
        text, name, ptext, pname, directory(problem), [int(o) for o in orders],
        etas=None if etas is None else [float(e) for e in etas],
        time_steps=None if time_steps is None else [float(t) for t in time_steps],
        paths=int(paths), seed=int(seed), substeps=int(substeps), budget=budget,
        exact=bool(exact), antithetic=bool(antithetic), threads=threads,
        set=None if set is None else {k: float(v) for k, v in set.items()},
        shard=None if shard is None else (int(shard[0]), int(shard[1])),
    )
    return document if shard is not None else VerifyResult(document)
