"""Prints the architecture matrix as a Markdown table: architecture x method, ok or refused (why).

Runs every method of tests/architectures on each network of tests/architectures/zoo.py (random
weights, small inputs), the same calls as the test, and times each architecture:

    .venv/bin/python scripts/architecture_matrix.py > matrix.md

torchvision imports on a CPU-only machine through the test setup (tests/conftest.py).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tests.conftest  # noqa: E402,F401  (defines torchvision's operator schemas on a CPU build)
from convscope.attribute.cam import last_spatial_layer  # noqa: E402
from convscope.errors import ConvscopeError  # noqa: E402
from tests.architectures.test_matrix import NAMES, every_method, image, model_of  # noqa: E402


def row(name: str) -> tuple[dict[str, str], float]:
    start = time.perf_counter()
    model, x = model_of(name), image(name)
    cells = {}
    with tempfile.TemporaryDirectory() as folder:
        for method, run in every_method(model, x, last_spatial_layer(model), folder).items():
            try:
                run()
                cells[method] = "ok"
            except ConvscopeError as error:
                cells[method] = "refused: " + str(error).split(";")[0].removeprefix("the ")[:60]
    return cells, time.perf_counter() - start


def main() -> None:
    warnings.filterwarnings("ignore")
    rows = {name: row(name) for name in NAMES}
    methods = list(next(iter(rows.values()))[0])
    print("| architecture | seconds | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for name, (cells, seconds) in rows.items():
        print(f"| {name} | {seconds:.1f} | " + " | ".join(cells[m] for m in methods) + " |")


if __name__ == "__main__":
    main()
