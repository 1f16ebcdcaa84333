"""Write a tiny KITTI 2012 ``data_stereo_flow`` tree: 2 training pairs (``colored_0/1``, ``disp_occ``,
``disp_noc``), uint16 PNG v = 256 d, 0 = no GT (left 3 columns of disp_noc are occluded).
Run: python tests/data/kitti2012/make_fixtures.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

from vitlab.core.data.io import write_kitti_disparity

HERE = Path(__file__).parent / "data_stereo_flow"


def main() -> None:
    rng = np.random.default_rng(2)
    H, W = 16, 40
    for k in range(2):
        d = np.full((H, W), 5.5 + k, np.float32)
        d[-2:] = np.inf
        noc = d.copy()
        noc[:, :3] = np.inf
        for folder in ("colored_0", "colored_1"):
            p = HERE / "training" / folder / f"{k:06d}_10.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p)
        write_kitti_disparity(HERE / "training" / "disp_occ" / f"{k:06d}_10.png", d)
        write_kitti_disparity(HERE / "training" / "disp_noc" / f"{k:06d}_10.png", noc)


if __name__ == "__main__":
    main()
