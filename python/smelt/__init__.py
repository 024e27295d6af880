"""smelt in Python: stochastic modified equations of optimizers, derived from the update
rule as written, as SymPy objects; their weak-error checks as arrays and plots.

    >>> import smelt
    >>> sme = smelt.derive("examples/sgd.opt", order=2)
    >>> sme.drift
    -eta*Derivative(f(x), x)*Derivative(f(x), (x, 2))/2 - Derivative(f(x), x)

Every result is the library's own (the same code as the ``smelt`` CLI); SymPy objects
come from the SymPy export, NumPy callables from the NumPy export, and the numbers of
``verify`` are those of ``smelt verify --format json`` for the same seed.
"""

from ._errors import SmeltError
from ._sme import Sme, derive, diff
from ._verify import VerifyResult, verify
from ._escape import EscapeResult, escape
from ._merge import merge
from ._scaling import Scaling, scaling
from ._native import VERSION as __version__
from . import _native
from ._source import read as _read

__all__ = ["SmeltError", "Sme", "derive", "diff", "check", "scaling", "Scaling", "verify", "VerifyResult", "escape", "EscapeResult", "merge"]


def check(rule):
    """Checks a rule (its text, or a path to an ``.opt`` file) and returns its canonical
    form, as ``smelt check`` prints it; raises :class:`SmeltError` on bad input."""
    text, name = _read(rule)
    return _native.check(text, name)

