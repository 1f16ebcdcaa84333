"""Write two tiny segmentation datasets in the plain-folder layout (``vitlab.core.data.SegmentationFolder``):
``source/`` (labelled: ``images/train`` + ``labels/train``, 8 frames; ``images/val`` + ``labels/val``, 2 frames)
and ``target/`` (``images/train``, 8 frames without labels; ``images/val`` + ``labels/val``, 4 labelled frames),
rendered from SyntheticScenes in its source and target styles at 48x64. Labels are 8-bit class-id PNGs (7
classes, listed in each root's ``classes.txt``); images are PNG in ``source/`` and JPEG in ``target/``.
Run: python tests/data/segfolder/make_fixtures.py (delete ``source/sample_class_stats.json`` afterwards: it is
the rare-class-sampling cache a UDA run writes).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data import SyntheticScenes

HERE = Path(__file__).resolve().parent
CLASSES = ("ground", "wall", "ellipse", "rectangle", "triangle", "ring", "star")


def write(root: Path, domain: str, seed: int, splits: dict[str, tuple[int, bool]], ext: str) -> None:
    root.mkdir(exist_ok=True)
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for split, (n, labelled) in splits.items():
        scenes = SyntheticScenes(n, (48, 64), seed=seed + len(split), modalities=["image", "semantic"],
                                 domain=domain)
        for i in range(n):
            s = scenes[i]
            rgb = (s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / "images" / split / f"frame_{i:03d}{ext}", quality=95)
            if labelled:
                (root / "labels" / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(s["semantic"].numpy().astype(np.uint8)).save(root / "labels" / split / f"frame_{i:03d}.png")


def main() -> None:
    write(HERE / "source", "source", 10, {"train": (8, True), "val": (2, True)}, ".png")
    write(HERE / "target", "target", 20, {"train": (8, False), "val": (4, True)}, ".jpg")


if __name__ == "__main__":
    main()
