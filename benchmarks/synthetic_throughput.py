"""Single-core throughput of SyntheticScenes (samples/s), so regressions in the renderer show up as numbers.

    PYTHONPATH=packages/core/src python benchmarks/synthetic_throughput.py --sizes 128 224 --samples 300
    python benchmarks/synthetic_throughput.py --sizes --stereo-sizes 64x128 256x512   # SyntheticStereo pairs/s

Threads are pinned to one before numpy/torch load: the figure is per core, which is what a DataLoader
worker gets. Not run by CI.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

try:
    from vitlab.core.data.synthetic import MODALITIES, SyntheticScenes
except ImportError:  # running from a checkout without PYTHONPATH
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages" / "core" / "src"))
    from vitlab.core.data.synthetic import MODALITIES, SyntheticScenes
from vitlab.core.data.synthetic_stereo import SyntheticStereo  # noqa: E402

PRESETS = {
    "all": None,
    "image": ["image"],
    "stereo": ["image", "right", "disparity", "occlusion"],
}


def measure(size, modalities: list[str] | None, domain: str | None, samples: int, repeats: int) -> float:
    """Best-of-``repeats`` samples/s over ``samples`` consecutive indices (best filters out noisy neighbours).

    ``domain=None`` measures :class:`SyntheticStereo` (image, right, disparity, occlusion) instead.
    """
    if domain is None:
        ds = SyntheticStereo(num_samples=samples, size=size)
    else:
        ds = SyntheticScenes(num_samples=samples, size=size, modalities=modalities, domain=domain)
    ds[0]  # warm-up: noise table, allocator
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(samples):
            ds[i]
        best = max(best, samples / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 224], help="square image sides")
    parser.add_argument("--stereo-sizes", nargs="*", default=[], help="SyntheticStereo sizes as HxW, e.g. 64x128")
    parser.add_argument("--presets", nargs="+", default=["all", "image"], choices=sorted(PRESETS))
    parser.add_argument(
        "--domains", nargs="+", default=["source", "target"], choices=["source", "target", "mixed"]
    )
    parser.add_argument("--samples", type=int, default=300, help="samples per timing run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"SyntheticScenes, 1 thread, all = {len(MODALITIES)} modalities, best of {args.repeats}x{args.samples}"
    )
    header = f"{'size':>6} {'modalities':>10} {'domain':>8} {'samples/s':>10} {'ms/sample':>10}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for preset in args.presets:
            for domain in args.domains:
                rate = measure(size, PRESETS[preset], domain, args.samples, args.repeats)
                print(f"{size:>6} {preset:>10} {domain:>8} {rate:>10.0f} {1e3 / rate:>10.2f}")
    for hw in args.stereo_sizes:
        h, w = (int(v) for v in hw.lower().split("x"))
        rate = measure((h, w), None, None, args.samples, args.repeats)
        print(f"SyntheticStereo {h}x{w}: {rate:.0f} pairs/s, {1e3 / rate:.2f} ms/pair (1 thread)")


if __name__ == "__main__":
    main()
