"""Regenerate ``mic.pt``: MIC's block mask from the official code.

    python tests/data/golden/mic/regenerate.py --official-root <lhoyer/MIC checkout>/seg --site <mmcv 1.3.7>

Runs ``mmseg/models/utils/masking_transforms.py::BlockMaskGenerator`` (mask ratio 0.7, block 64) with torch's
global seed 0 on a 2 x 3 x 192 x 320 batch and on a 1 x 3 x 100 x 160 one (rounded grid); stores the masks.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("lhoyer/MIC", __doc__)

from mmseg.models.utils.masking_transforms import BlockMaskGenerator  # noqa: E402

gen = BlockMaskGenerator(mask_ratio=0.7, mask_block_size=64)
cases = []
for shape in ((2, 3, 192, 320), (1, 3, 100, 160)):
    torch.manual_seed(0)
    cases.append({"shape": shape, "seed": 0, "mask": gen.generate_mask(torch.zeros(shape)).to(torch.bool)})
_official.save(Path(__file__).with_name("mic.pt"), args, {"block_size": 64, "ratio": 0.7, "cases": cases})
