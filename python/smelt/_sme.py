"""Derived SMEs as SymPy objects."""

import functools
import json
import types

import sympy

from . import _native
from ._source import read

# The seed of the independent check (the CLI's `--check` uses the same).
CHECK_SEED = 0x5EED_C4EC


class Sme:
    """A stochastic modified equation ``dZ = b(Z) dt + σ(Z) dW`` with ``D = σσᵀ``.

    ``drift`` and ``diffusion`` are SymPy objects in the notation of smelt's SymPy
    export: one expression for a rule with one state (``x``), a dict by state name for
    several (``diffusion`` by pair of states), and with ``dim=d`` Matrices of components.
    ``symbols`` holds every name the export defines (``eta``, ``x``, ``f``, ``Sigma``,
    ``state_vector``, ``drift_vector``, ``diffusion_matrix``, …).
    """

    def __init__(self, derivation, dim=None, hessian_aware=False):
        self._derivation = derivation
        self.dim = dim
        self.hessian_aware = hessian_aware

    @functools.cached_property
    def symbols(self):
        """Every name the SymPy export defines (built on first use: SymPy takes about a
        millisecond to build the expressions)."""
        names = {}
        exec(compile(self._derivation.sympy(self.dim), "<smelt: SymPy export>", "exec"), names)
        names.pop("__builtins__", None)
        return names

    @functools.cached_property
    def _json(self):
        return json.loads(self._derivation.json())

    @property
    def drift(self):
        return self.symbols["drift"]

    @property
    def diffusion(self):
        return self.symbols["diffusion"]

    @property
    def order(self):
        """The weak order derived (below the order asked when a condition caps it)."""
        return self.symbols["order"]

    @property
    def requested_order(self):
        return self.symbols["requested_order"]

    @property
    def optimizer(self):
        return self.symbols["optimizer"]

    @property
    def conditions(self):
        """The moment conditions beyond drift and diffusion, as the SymPy export states
        them (residual 0: met)."""
        return self.symbols.get("conditions", [])

    @property
    def certificate(self):
        """How the SME was checked: the re-expansion's residuals (``certificate``) and,
        when the derivation ran with ``check=True``, the independent check against the
        rule's own numeric one-step moments (``independent``), as in the JSON export."""
        sme = self._json.get("sme", self._json)
        return {"certificate": sme.get("certificate"), "independent": sme.get("independent")}

    @property
    def eliminated(self):
        """The fast states eliminated (fixed-rate momentum, EMAs), as the export lists them."""
        return self.symbols.get("eliminated", [])

    @property
    def notes(self):
        return self.symbols.get("notes", [])

    def to_latex(self, standalone=False):
        """The LaTeX ``smelt derive --format latex`` prints."""
        return self._derivation.latex(standalone)

    def to_json(self):
        """The JSON document ``smelt derive --format json`` prints (a string)."""
        return self._derivation.json()

    def to_dict(self):
        return json.loads(self._derivation.json())

    def text(self):
        """The text ``smelt derive`` prints (component by component with ``dim``)."""
        return self._derivation.text(self.dim)

    def numpy(self):
        """The NumPy export as a module: ``drift(x, *, grad_f, …)``,
        ``diffusion(x, *, …)`` and the rest of ``smelt derive --format numpy``."""
        module = types.ModuleType(f"smelt_sme_{self.optimizer}")
        source = self._derivation.numpy()
        exec(compile(source, f"<smelt: NumPy export of {self.optimizer}>", "exec"), module.__dict__)
        return module

    def _repr_latex_(self):
        # The LaTeX export without its comment lines: an align environment, which
        # Jupyter's MathJax renders as it stands.
        lines = [l for l in self.to_latex().splitlines() if not l.lstrip().startswith("%")]
        return "\n".join(lines)

    def __str__(self):
        return self.text()

    def __repr__(self):
        return f"<Sme of {self.optimizer}, order {self.order}>"


def derive(rule, order=None, hessian_aware=False, dim=None, check=True, max_terms=None):
    """Derives the SME of ``rule`` (its text, or a path to an ``.opt`` file), as
    ``smelt derive`` does.

    ``order``: the weak order (default 1; with ``hessian_aware``, the order whose series
    certifies the closed forms, 2 to 6, default 4). ``dim``: the result component by
    component in this dimension. ``check``: run the independent check (the rule's own
    one-step moments, evaluated numerically, against the SME's), as the CLI does by
    default; an SME it contradicts raises. ``max_terms``: the limit on one intermediate
    expression. Raises :class:`smelt.SmeltError` for bad input or a derivation smelt
    refuses.
    """
    text, name = read(rule)
    derivation = _native.derive(
        text, name, None if order is None else int(order), bool(hessian_aware),
        CHECK_SEED if check and not hessian_aware else None, max_terms,
    )
    return Sme(derivation, dim=dim, hessian_aware=hessian_aware)


def _by_key(value):
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, sympy.MatrixBase):
        return {index: entry for index, entry in enumerate(value)}
    return {None: value}


def diff(a, b):
    """The terms in which two SMEs differ: for the drift and the diffusion, per state
    (or component), the terms of ``a − b`` after expansion. A state missing from the
    result means the two agree there; ``{}`` means the SMEs are the same.

    Both must be in the same notation (the same ``dim``). SymPy matches symbols and
    functions by name (and assumptions), so the two SMEs' ``eta``, ``x`` and ``f`` are
    the same objects; hyperparameters with different names differ.
    """
    out = {}
    for part in ("drift", "diffusion"):
        left, right = _by_key(getattr(a, part)), _by_key(getattr(b, part))
        for key in sorted(set(left) | set(right), key=repr):
            zero = sympy.Integer(0)
            d = sympy.expand(left.get(key, zero) - right.get(key, zero))
            if d != 0:
                out.setdefault(part, {})[key] = list(sympy.Add.make_args(d))
    return out
