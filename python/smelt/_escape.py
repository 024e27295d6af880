"""Exit times from a region: the optimizer against its SDEs."""

import json

import numpy as np

from . import _native
from ._plot import loglog
from ._source import directory, read


class EscapeResult:
    """The result of :func:`escape`: ``json``, the document ``smelt escape --format
    json`` prints for the same arguments (the same numbers; the wall-clock ``seconds``
    differ), and per model NumPy arrays over the runs (step sizes, then batch sizes):
    ``eta``, ``batch``, ``mean_time``, ``mean_time_se``, ``exited``, ``censored``."""

    def __init__(self, document):
        self.json = json.loads(document)
        runs = self.json["results"]
        self.models = [m["model"] for m in runs[0]["models"]] if runs else []
        self.eta = np.array([r["eta"] for r in runs], dtype=float)
        self.batch = np.array([r["batch"] for r in runs], dtype=float)
        column = lambda key: {
            name: np.array([float("nan") if r["models"][i][key] is None else r["models"][i][key] for r in runs], dtype=float)
            for i, name in enumerate(self.models)
        }
        self.mean_time = column("mean_time")
        self.mean_time_se = column("mean_time_se")
        self.exited = column("exited")
        self.censored = column("censored")

    def to_pandas(self):
        """One row per run and model (needs pandas)."""
        import pandas as pd

        rows = []
        for i in range(len(self.eta)):
            for name in self.models:
                rows.append({
                    "eta": self.eta[i], "batch": self.batch[i], "model": name,
                    "mean_time": self.mean_time[name][i], "mean_time_se": self.mean_time_se[name][i],
                    "exited": self.exited[name][i], "censored": self.censored[name][i],
                })
        return pd.DataFrame(rows)

    def plot(self, ax=None):
        """Mean exit time against η per model, with 2-s.e. bars, on log axes (needs
        matplotlib)."""
        lines = [(self.eta, self.mean_time[m], self.mean_time_se[m], m) for m in self.models]
        title = f"{self.json['optimizer']} on {self.json['problem']}, region {self.json['region']}"
        return loglog(ax, lines, "step size η", "mean exit time", title)

    def __repr__(self):
        return f"<EscapeResult {self.json['optimizer']}: {len(self.eta)} runs of {', '.join(self.models)}>"


def escape(rule, problem, region, models="opt,sme1,sme2", etas=None, batch=None, paths=10000,
           seed=1, start=None, refine=True, saddle=None, horizon=None, substeps=8, em=False,
           threads=None, set=None, shard=None):
    """``smelt escape``: exit times of the optimizer and its SDEs (``models``) from
    ``region`` (``"ball 1"``, ``"past 0"``, ``"level C"``, ``"EXPR < C"``), with the
    CLI's options (``start`` is ``--from``). The GIL is released while it runs.

    ``shard=(k, n)`` runs shard k of n (``--shard k/n``) and returns its part, the JSON
    text the CLI prints, for :func:`smelt.merge`."""
    text, name = read(rule)
    ptext, pname = read(problem)
    point = lambda p: None if p is None else (str(p) if not isinstance(p, (list, tuple)) else "[" + ", ".join(map(str, p)) + "]")
    document = _native.escape(
        text, name, ptext, pname, directory(problem), region, models,
        etas=None if etas is None else [float(e) for e in etas],
        batch=None if batch is None else [float(b) for b in batch],
        paths=int(paths), seed=int(seed), **{"from": point(start)}, refine=bool(refine),
        saddle=point(saddle), horizon=horizon, substeps=int(substeps), em=bool(em),
        threads=threads, set=None if set is None else {k: float(v) for k, v in set.items()},
        shard=None if shard is None else (int(shard[0]), int(shard[1])),
    )
    return document if shard is not None else EscapeResult(document)
