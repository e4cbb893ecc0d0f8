"""Regenerates the README's pictures: runs the tour and copies its pictures to docs/images/.

Run: python scripts/readme_pictures.py
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from convscope.tour import run_tour

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        run_tour(folder)
        IMAGES.mkdir(parents=True, exist_ok=True)
        for old in IMAGES.glob("*.png"):
            old.unlink()
        for picture in sorted(Path(folder).glob("*.png")):
            shutil.copy(picture, IMAGES / re.sub(r"^\d{3}-", "", picture.name))
    print(f"wrote {len(list(IMAGES.glob('*.png')))} pictures to {IMAGES}")


if __name__ == "__main__":
    main()
