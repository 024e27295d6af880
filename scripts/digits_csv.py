"""Writes examples/problems/data/digits.csv: scikit-learn's bundled handwritten digits
(`sklearn.datasets.load_digits`, 1,797 images of 8x8 pixels, UCI's optdigits test set;
shipped inside the package, nothing is downloaded) as a binary task for
examples/problems/digits_net.prob.

Each row is the 64 pixels scaled to [0, 1] (divided by 16, their largest value), then
the label: -1 for the digits 0-4, +1 for 5-9. Rows keep scikit-learn's order. The
values are k/16, written exactly (at most four decimals).

Regenerate (from the repository root; creates .venv and adds scikit-learn to it):

    scripts/digits_csv.sh
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "examples/problems/data/digits.csv"
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
    digits = load_digits()
    x = digits.data / 16.0
    assert x.shape == (1797, 64) and x.min() >= 0.0 and x.max() <= 1.0
    y = np.where(digits.target < 5, -1, 1)
    lines = [",".join([f"p{k + 1}" for k in range(64)] + ["y"])]
    for row, label in zip(x, y):
        lines.append(",".join(f"{v:g}" for v in row) + f",{label}")
    out.write_text("\n".join(lines) + "\n")
    print(f"{out}: {x.shape[0]} rows, 64 features in [0, 1], labels {np.bincount(y + 1)[[0, 2]]} (-1, +1)")


if __name__ == "__main__":
    main()
