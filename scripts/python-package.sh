#!/usr/bin/env bash
# Builds the Python package from this checkout the way a user installs it
# (`pip install .`, maturin building the abi3 wheel) into a fresh virtual environment,
# .venv-package, with the test extras, and runs its tests (python/tests) and the
# notebook(s) in examples/notebooks. Used by .ci/run; run it by hand the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-package
python3 -m venv .venv-package
py=.venv-package/bin/python
$py -m pip install --quiet --disable-pip-version-check --upgrade pip
# The native module is in the cargo workspace: it shares the target directory and the
# profiles. Here it is built in the dev profile (smelt at opt-level 1), which reuses
# what `cargo test` compiled; `pip install .` by hand builds the release profile.
CARGO_TARGET_DIR="$PWD/target" MATURIN_PEP517_ARGS="--profile ${SMELT_WHEEL_PROFILE:-dev}" \
  $py -m pip install --quiet --disable-pip-version-check ".[test]"
$py -m pytest -q python/tests "$@"
