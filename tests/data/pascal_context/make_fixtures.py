"""Writes a tiny PASCAL-Context multi-task tree (the PASCAL_MT layout) under ./PASCAL_MT.

Run from anywhere: ``python tests/data/pascal_context/make_fixtures.py``. Five 40x48 images (3 train, 2 val);
ids 2008_000002 and 2008_000004 carry person parts, the others have no person (human_parts all 255).
Formats as in the real archive: JPEG images, uint8 PNG semseg (one under pascal-context/, the rest VOC12/),
MATLAB LabelMap and PASCAL-Part 'anno' structs (scipy.io.savemat), RGB normals and grey saliency PNGs,
and small db_info class tables (names/ids as in the real files, only a handful of them).
"""

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

ROOT = Path(__file__).resolve().parent / "PASCAL_MT"
H, W = 40, 48
TRAIN = ["2008_000002", "2008_000003", "2008_000004"]
VAL = ["2008_000005", "2008_000006"]
PERSONS = {"2008_000002", "2008_000004"}
CONTEXT = {"aeroplane": 2, "bottle": 4, "chair": 9, "person": 15, "tvmonitor": 20, "wall": 427, "floor": 158,
           "sky": 360, "unknown": 0}
NYU = ["wall", "floor", "chair", "bottle", "person", "unknown"]


def parts_struct(person_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    names = ["head", "torso", "luarm", "rlarm", "ruleg", "lfoot"]
    rows = np.nonzero(person_mask.any(1))[0]
    parts = np.zeros((1, len(names)), dtype=[("part_name", "O"), ("mask", "O")])
    bands = np.array_split(rows, len(names))
    for k, (n, band) in enumerate(zip(names, bands)):
        m = np.zeros_like(person_mask, dtype=np.uint8)
        m[band] = person_mask[band]
        parts[0, k] = (np.array([n]), m)
    return parts


def main() -> None:
    if ROOT.exists():
        shutil.rmtree(ROOT)
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "ImageSets/Context", "semseg/VOC12", "semseg/pascal-context", "pascal-context/trainval",
                "human_parts", "normals_distill", "sal_distill", "db_info"):
        (ROOT / sub).mkdir(parents=True, exist_ok=True)
    (ROOT / "ImageSets/Context/train.txt").write_text("\n".join(TRAIN) + "\n")
    (ROOT / "ImageSets/Context/val.txt").write_text("\n".join(VAL) + "\n")
    (ROOT / "db_info/context_classes.json").write_text(json.dumps(CONTEXT))
    (ROOT / "db_info/nyu_classes.json").write_text(json.dumps(NYU))
    for i, name in enumerate(TRAIN + VAL):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(img).save(ROOT / "JPEGImages" / f"{name}.jpg", quality=95)
        # LabelMap: sky above, wall/floor below, an object box, a person box in person images
        lm = np.full((H, W), CONTEXT["sky"], np.uint16)
        lm[H // 3:] = CONTEXT["wall"]
        lm[2 * H // 3:] = CONTEXT["floor"]
        lm[5:15, 5 + i:20 + i] = CONTEXT["tvmonitor"] if i % 2 else CONTEXT["aeroplane"]
        person = np.zeros((H, W), bool)
        if name in PERSONS:
            person[10:38, 28:40] = True
            lm[person] = CONTEXT["person"]
        savemat(ROOT / "pascal-context/trainval" / f"{name}.mat", {"LabelMap": lm})
        sem = np.zeros((H, W), np.uint8)
        sem[5:15, 5 + i:20 + i] = 20 if i % 2 else 1
        sem[person] = 15
        sem[0, :] = 255
        sub = "pascal-context" if i == 1 else "VOC12"
        Image.fromarray(sem).save(ROOT / "semseg" / sub / f"{name}.png")
        objects = [("aeroplane", 1, (lm == CONTEXT["aeroplane"]).astype(np.uint8), np.zeros((0, 0)))]
        if name in PERSONS:
            objects.append(("person", 15, person.astype(np.uint8), parts_struct(person, rng)))
        if name != "2008_000006":  # one image has no PASCAL-Part file at all
            objs = np.zeros((1, len(objects)), dtype=[("class", "O"), ("classIndex", "O"), ("mask", "O"), ("parts", "O")])
            for k, (cls, idx, mask, parts) in enumerate(objects):
                objs[0, k] = (np.array([cls]), np.array([[idx]], np.uint8), mask, parts)
            anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
            anno[0, 0] = (np.array([name]), objs)
            savemat(ROOT / "human_parts" / f"{name}.mat", {"anno": anno})
        n = rng.normal(size=(H, W, 3))
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        Image.fromarray(np.round((n + 1) * 127.5).astype(np.uint8)).save(ROOT / "normals_distill" / f"{name}.png")
        sal = np.zeros((H, W), np.uint8)
        sal[5:15, 5 + i:20 + i] = 200
        sal[person] = 255
        sal[20:22, 0:4] = 100  # below 0.5: not salient
        Image.fromarray(sal).save(ROOT / "sal_distill" / f"{name}.png")
    print(f"wrote {ROOT}")


if __name__ == "__main__":
    main()
