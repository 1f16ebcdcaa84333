"""Regenerate ``unitt.pt``: the UniTT-Stereo feature-warp consistency loss from the official code.

    python tests/data/golden/unitt/regenerate.py --official-root <00kim/UniTT-Stereo checkout>

Runs ``stereo/consistency_loss.py::ConsistencyLoss`` (CUDA transfers turned into no-ops so it runs on CPU) on
seeded encoder tokens (left tokens zeroed at masked positions), a GT disparity with invalid (+inf) pixels, for
B = 1, 2 and 3 on a 64x128 image (patch 16 -> 4x8 tokens).
"""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("00kim/UniTT-Stereo", __doc__)
torch.Tensor.cuda = lambda self, *a, **k: self  # the official loss moves tensors to CUDA; stay on CPU

from stereo.consistency_loss import ConsistencyLoss  # noqa: E402

g = torch.Generator().manual_seed(0)
cases = []
for B in (1, 2, 3):
    H, W, C, p = 64, 128, 8, 16
    h, w = H // p, W // p
    feat_r = torch.randn(B, h * w, C, generator=g)
    mask = torch.rand(B, h * w, generator=g) < 0.3  # True = masked left token
    # left tokens close to the right ones warped by about 1 token, so the loss is not dominated by noise
    feat_l = torch.roll(feat_r.reshape(B, h, w, C), shifts=1, dims=2).reshape(B, h * w, C)
    feat_l = feat_l + 0.1 * torch.randn(B, h * w, C, generator=g)
    feat_l = feat_l.masked_fill(mask[..., None], 0.0)
    gt = torch.rand(B, 1, H, W, generator=g) * 40 + 2
    gt[torch.rand(gt.shape, generator=g) < 0.2] = float("inf")
    images = torch.zeros(B, 3, H, W)
    loss = ConsistencyLoss()(gt, (feat_l, feat_r), 0, SimpleNamespace(batch_size=B), images, p, mask)
    cases.append({"feat_left": feat_l, "feat_right": feat_r, "mask": mask, "gt": gt, "patch": p,
                  "hw": (h, w), "loss": loss})

_official.save(Path(__file__).with_name("unitt.pt"), args, {"consistency": cases})
