"""smelt.verify against the CLI's JSON (the same seed gives the same numbers, bit for
bit), its arrays, table and plot, and Ctrl-C."""

import json
import signal
import subprocess
import sys
import time

import numpy as np

import smelt


def without_clock(doc):
    doc = json.loads(json.dumps(doc))
    doc["run"].pop("seconds", None)
    return doc


def test_the_same_numbers_as_the_cli(root, cli):
    rule, problem = root / "examples/sgd.opt", root / "examples/problems/double_well.prob"
    args = dict(orders=(1, 2), etas=[0.25, 0.125, 0.0625], paths=1024, seed=7)
    res = smelt.verify(rule, problem, **args)
    out = subprocess.run(
        [cli, "verify", str(rule), "--problem", str(problem), "--orders", "1,2",
         "--etas", "0.25,0.125,0.0625", "--paths", "1024", "--seed", "7", "--format", "json", "-q"],
        capture_output=True, text=True,
    )
    assert out.returncode in (0, 3), out.stderr
    theirs = json.loads(out.stdout)
    assert without_clock(res.json) == without_clock(theirs)
    # Bit for bit: the floats compare equal as Python floats parsed from both documents.
    for mine, cli_series in zip(res.series, theirs["series"]):
        errors = np.array([p["error"] for p in cli_series["points"]])
        assert np.array_equal(mine.error, errors)


def test_antithetic_and_exact_runs(root):
    rule, problem = root / "examples/sgd.opt", root / "examples/problems/quadratic.prob"
    exact = smelt.verify(rule, problem, exact=True)
    assert exact.json["mode"] == "exact"
    assert all(s.status == "confirmed" for s in exact.series)
    pairs = smelt.verify(rule, problem, etas=[0.125, 0.0625], paths=512, antithetic=True, budget=0)
    assert pairs.json["run"]["antithetic"] is True


def test_arrays_table_and_plot(root):
    import matplotlib

    matplotlib.use("Agg")
    res = smelt.verify(root / "examples/sgd.opt", root / "examples/problems/quadratic.prob",
                       etas=[0.125, 0.0625, 0.03125], paths=2048, budget=0)
    s = res.series[0]
    assert s.eta.dtype == float and s.eta.shape == (3,)
    assert np.all(s.std_err > 0)
    df = res.to_pandas()
    assert len(df) == 3 * len(res.series)
    assert set(["order", "observable", "eta", "error", "std_err", "status"]) <= set(df.columns)
    ax = res.plot()
    assert len(ax.get_lines()) >= len(res.series)


def assert_ctrl_c_interrupts(call):
    """Runs ``call`` (a smelt call, as source) in a child, sends it SIGINT after 2 s, and
    asserts it raised KeyboardInterrupt within 30 s. The child installs Python's own
    SIGINT handler: a process started in the background inherits SIGINT ignored, and
    Python then leaves it so."""
    script = (
        "import signal, smelt, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "print('start', flush=True)\n"
        "try:\n"
        f"    {call}\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(0)\n"
        "sys.exit(5)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "start"
        time.sleep(2.0)
        started = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0 and "interrupted" in out
    assert time.monotonic() - started < 30


def test_ctrl_c_interrupts_a_simulation(root):
    # A run of about 10¹⁰ path-steps.
    assert_ctrl_c_interrupts(
        f"smelt.verify({str(root / 'examples/sgd.opt')!r}, {str(root / 'examples/problems/double_well.prob')!r},"
        " paths=1 << 20, etas=[2**-14], budget=0, threads=1)"
    )


def test_escape_gives_the_clis_numbers(root, cli):
    rule, problem = root / "examples/sgd.opt", root / "examples/problems/double_well_escape.prob"
    res = smelt.escape(rule, problem, region="past 0", etas=[0.2, 0.15], paths=512, seed=3)
    out = subprocess.run(
        [cli, "escape", str(rule), "--problem", str(problem), "--region", "past 0",
         "--etas", "0.2,0.15", "--paths", "512", "--seed", "3", "--format", "json", "-q"],
        capture_output=True, text=True, check=True,
    )
    theirs = json.loads(out.stdout)
    strip = lambda d: {k: v for k, v in without_clock(d).items() if k != "results"}
    assert strip(res.json) == strip(theirs)
    for a, b in zip(res.json["results"], theirs["results"]):
        a, b = dict(a), dict(b)
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    assert res.models[0] == "SGD" and res.mean_time["SGD"].shape == (2,)
    assert np.all(res.mean_time["SGD"] > 0)


def test_ctrl_c_interrupts_an_escape_run(root):
    assert_ctrl_c_interrupts(
        f"smelt.escape({str(root / 'examples/sgd.opt')!r}, {str(root / 'examples/problems/double_well_escape.prob')!r},"
        " region='past 0', etas=[0.01], paths=1 << 20, threads=1)"
    )
