"""Prints the architecture matrix as a Markdown table: for each architecture, the methods refused and why.

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
    """``({method: refusal message}, seconds)``: the methods refused on this architecture, and the time
    every method took together (those not listed worked)."""
    start = time.perf_counter()
    model, x = model_of(name), image(name)
    refused = {}
    with tempfile.TemporaryDirectory() as folder:
        for method, run in every_method(model, x, last_spatial_layer(model), folder).items():
            try:
                run()
            except ConvscopeError as error:
                refused[method] = str(error)
    return refused, time.perf_counter() - start


def reasons(refused: dict[str, str]) -> str:
    """The refused methods grouped by their message, shortened to its first clause."""
    groups: dict[str, list[str]] = {}
    for method, message in refused.items():
        clauses = message.split(";")
        why = next((c for c in clauses if " uses " in c), clauses[0]).split(", which")[0].strip()
        groups.setdefault(why.removeprefix("this model ").removeprefix("attention rollout "), []).append(method)
    return "; ".join(f"{', '.join(methods)}: {why}" for why, methods in groups.items()) or "none"


def main() -> None:
    warnings.filterwarnings("ignore")
    print("| architecture | seconds, all methods | refused, with the reason (every other method works) |")
    print("|---|---|---|")
    for name in NAMES:
        refused, seconds = row(name)
        print(f"| {name} | {seconds:.1f} | {reasons(refused)} |", flush=True)


if __name__ == "__main__":
    main()
