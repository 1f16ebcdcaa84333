"""Images per second of the ImageNet input path: JPEG decoding in the loader workers vs batched on the device.

``ImageFolderDataModule(decode="workers")`` (the default) decodes, crops (RandomResizedCrop, bicubic) and flips
with PIL in each worker; ``decode="device"`` has the workers read the file bytes and draw the crop box only, and
decodes the batch on the training device (``torchvision.io.decode_jpeg``, nvJPEG on CUDA), then crops, resizes and
flips there (:func:`vitlab.core.data.imagefolder.decode_crops`). Reported:

* per worker: samples/s one process makes of each path's worker side (the figure to multiply by the worker count);
* loader: samples/s of a ``DataLoader`` with ``--workers`` processes over each path;
* device side of ``decode="device"``: images/s of ``decode_crops`` on ``--device`` (CUDA when available).

The images are written first: ``--images`` JPEGs of ImageNet's mean size (500 x 375, quality 90) in a temporary
ImageNet layout, with smooth content so that they compress like photos.

    python benchmarks/input_pipeline.py --images 512 --workers 4 --batch 128
    python benchmarks/input_pipeline.py --images 64 --workers 1 --batch 16      # a quick look on a CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_images(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> None:
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        folder = root / "train" / f"class_{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 255, (h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)  # smooth, photo-like content
        noise = rng.integers(-8, 8, (h, w, 3))
        Image.fromarray(np.clip(np.asarray(img, np.int64) + noise, 0, 255).astype(np.uint8)).save(
            folder / f"img_{i:05d}.JPEG", quality=90)
    (root / "val").symlink_to(root / "train")


def per_worker(dataset, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        dataset[i % len(dataset)]
    return n / (time.perf_counter() - t0)


def loader_rate(dm, workers: int, batches: int) -> float:
    dm.num_workers = workers
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)  # worker start-up
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            n += len(next(it)["label"])
        except StopIteration:
            break
    return n / (time.perf_counter() - t0)


def device_rate(dm, device: torch.device, repeats: int) -> float:
    from vitlab.core.data.imagefolder import decode_crops

    dm.num_workers = 0
    batch = next(iter(dm.train_dataloader()))
    decode_crops(batch["encoded"], batch["box"], batch["flip"], dm.size, device)  # warm-up (nvJPEG handles)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        x = decode_crops(batch["encoded"], batch["box"], batch["flip"], dm.size, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    del x
    return repeats * len(batch["label"]) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    from vitlab.core.data import ImageFolderDataModule

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512, help="JPEGs to write (500 x 375)")
    ap.add_argument("--workers", type=int, default=4, help="loader processes for the loader row")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=224, help="crop size")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = ap.parse_args(argv)
    if args.images < args.batch:
        ap.error("--images must be >= --batch")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root, args.images)
        for decode in ("workers", "device"):
            dm = ImageFolderDataModule(str(root), mode="pretrain", size=args.size, batch_size=args.batch,
                                       num_workers=0, decode=decode, pin_memory=False)
            dm.setup_check_samples = 0
            dm.setup("fit")
            ds = dm.train_set
            n = min(args.images, 4 * args.batch)
            rows.append((decode, per_worker(ds, n), loader_rate(dm, args.workers, max(1, args.images // args.batch - 1)),
                         device_rate(dm, device, 3) if decode == "device" else None))
    print(f"\nImageNet-style input path, {args.images} JPEGs of 500x375, crop {args.size}, batch {args.batch}; "
          f"torch {torch.__version__}, device side on {device}")
    print(f"| decode | per worker (samples/s) | loader, {args.workers} workers (samples/s) | device side (img/s) |")
    print("|---|---:|---:|---:|")
    for decode, pw, lr, dr in rows:
        print(f"| `{decode}` | {pw:.0f} | {lr:.0f} | {'-' if dr is None else f'{dr:.0f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
