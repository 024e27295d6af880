"""The batch-size scaling rule as an object (``smelt scaling``)."""

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Dict, List, Optional

from . import _native
from ._source import read


@dataclass(frozen=True)
class Scaling:
    """How the hyperparameters must scale when the batch grows by a factor κ so that the
    first-order SME stays the same: each ``h`` becomes ``κ**exponents[h] * h``.

    ``exponents``: every hyperparameter of the file (the small parameter first);
    ``derived``: quantities the file's scalings define (``"1 - beta1"``); ``steps``: the
    exponent of the number of steps to a fixed horizon; ``free``: hyperparameters the SME
    does not constrain (exponent 0 above). When no scaling exists, ``possible`` is False,
    the exponents are empty and ``blocker`` says which term of the SME cannot be kept.
    ``text`` is what ``smelt scaling`` prints, and ``str()`` of the object."""

    text: str
    exponents: Dict[str, Fraction] = field(default_factory=dict)
    derived: Dict[str, Fraction] = field(default_factory=dict)
    steps: Optional[Fraction] = None
    free: List[str] = field(default_factory=list)
    blocker: Optional[str] = None

    @property
    def possible(self) -> bool:
        return self.blocker is None

    def __str__(self) -> str:
        return self.text


def scaling(rule, noise_scale=None) -> Scaling:
    """The batch-size scaling rule of a rule (its text, or a path to an ``.opt`` file), as
    ``smelt scaling`` finds it. ``noise_scale``: the hyperparameter or scaling that is the
    noise's standard deviation (∝ κ^(-1/2)); without it, Σ ∝ 1/κ."""
    text, name = read(rule)
    d = _native.scaling(text, name, noise_scale)
    if "blocker" in d:
        return Scaling(text=d["text"], blocker=d["blocker"])
    return Scaling(
        text=d["text"],
        exponents={h: Fraction(e) for h, e in d["hypers"]},
        derived={h: Fraction(e) for h, e in d["derived"]},
        steps=Fraction(d["steps"]),
        free=list(d["free"]),
    )
