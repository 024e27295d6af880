"""The parts of a sharded run, merged into the single run's result."""

import json
import os

from . import _native
from ._escape import EscapeResult
from ._source import _is_path
from ._verify import VerifyResult


def merge(parts):
    """``smelt merge``: the parts of a sharded ``verify`` or ``escape`` run (each the JSON
    text that ``shard=(k, n)`` returns, a dict of it, or a path to a file holding it), in
    any order, every shard of one run once. Returns what the single run with the same
    arguments returns (``verify``: with ``budget=0``), the same numbers bit for bit; its
    ``run.seconds`` is the sum of the parts' wall times. Raises ValueError naming the part
    and the field when the parts are not one whole run."""
    texts, names = [], []
    for i, part in enumerate(parts):
        if isinstance(part, dict):
            texts.append(json.dumps(part))
            names.append(f"part {i + 1}")
        elif _is_path(part):
            with open(part, encoding="utf-8") as f:
                texts.append(f.read())
            names.append(os.fspath(part))
        elif isinstance(part, str):
            texts.append(part)
            names.append(f"part {i + 1}")
        else:
            raise TypeError(f"a part is the JSON text of a shard, a dict or a path, not {type(part).__name__}")
    schema, document = _native.merge(texts, names)
    return VerifyResult(document) if schema == "smelt-verify" else EscapeResult(document)
