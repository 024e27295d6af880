#!/usr/bin/env bash
# Regenerates examples/problems/data/digits.csv (scikit-learn's bundled digits as a
# binary task; see scripts/digits_csv.py) in the project's virtual environment,
# installing scikit-learn there if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(scripts/python-env.sh)"
if ! "$py" -c "import sklearn" 2>/dev/null; then
  "$py" -m pip install --quiet --disable-pip-version-check scikit-learn==1.9.1 >&2
fi
exec "$py" scripts/digits_csv.py "$@"
