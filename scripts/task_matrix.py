"""Prints the task matrix as a Markdown table: for each model of tests/attribute/test_task_matrix.py
(every task; torchvision, timm, Hugging Face and Ultralytics, random weights), each method's outcome,
checked as the test checks it, and the seconds the model took:

    .venv/bin/python scripts/task_matrix.py > task-matrix.md

torchvision imports on a CPU-only machine through the test setup (tests/conftest.py).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tests.conftest  # noqa: E402,F401  (defines torchvision's operator schemas on a CPU build)
from tests.attribute.test_task_matrix import METHODS, MODELS, outcomes  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore")
    print("| model | task | " + " | ".join(METHODS) + " | seconds |")
    print("|---" * (len(METHODS) + 3) + "|")
    notes = []
    for name, (task, _, _) in MODELS.items():
        started = time.perf_counter()
        found, _ = outcomes(name)
        cells = []
        for method in METHODS:
            if found[method] == "ok":
                cells.append("ok")
            else:
                notes.append(f"- {name}, {method}: {found[method]}")
                cells.append(f"refused ({len(notes)})")
        print(f"| {name} | {task} | " + " | ".join(cells) + f" | {time.perf_counter() - started:.0f} |")
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
