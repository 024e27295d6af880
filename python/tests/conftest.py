import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def cli():
    """The smelt CLI of this checkout (``SMELT_BIN``, else a built one in target/, else
    built now with cargo), to compare the package with."""
    given = os.environ.get("SMELT_BIN")
    if given:
        return given
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "smelt"
        if path.exists():
            return str(path)
    subprocess.run(["cargo", "build", "--quiet", "--bin", "smelt"], cwd=ROOT, check=True)
    return str(ROOT / "target" / "debug" / "smelt")
