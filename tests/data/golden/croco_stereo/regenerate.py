"""Regenerate ``croco_stereo.pt``: CroCo-Stereo losses and tiled prediction from the official code.

    python tests/data/golden/croco_stereo/regenerate.py --official-root <naver/croco checkout>

Losses: ``LaplacianLossBounded2`` (a = b = 3), ``LaplacianLoss`` and ``L1Loss`` of ``stereoflow/criterion.py`` on a
seeded prediction / confidence / GT with invalid (+inf) pixels. Tiling: ``stereoflow/engine.py::tiled_pred`` with
the fixed toy network :func:`toy_net` (defined identically in the test), crop 32x64, ``conf_expsigmoid_15_3``,
on an image smaller than the crop (upscaled and resized back) and two larger ones (overlap 0.7 and 0.9).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("naver/croco", __doc__)

from stereoflow.criterion import L1Loss, LaplacianLoss, LaplacianLossBounded2  # noqa: E402
from stereoflow.engine import tiled_pred  # noqa: E402


def toy_net(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in network: output depends on content and on the position inside the window, so the
    fused result depends on the window offsets and the confidence weights."""
    _, _, h, w = left.shape
    ramp_x = torch.linspace(-1.0, 1.0, w)[None, None, None, :]
    ramp_y = torch.linspace(0.0, 0.5, h)[None, None, :, None]
    disp = 2.0 * (left - right).mean(1, keepdim=True) + 0.5 * left[:, :1] + ramp_x + ramp_y
    conf = 1.5 * right.mean(1, keepdim=True) - ramp_x * ramp_y
    return torch.cat([disp, conf], 1)


class Toy(torch.nn.Module):
    class head:  # noqa: N801 - what tiled_pred reads
        num_channels = 2

    def forward(self, a, b):
        return toy_net(a, b)


g = torch.Generator().manual_seed(0)
pred = torch.randn(2, 1, 12, 20, generator=g) * 5 + 20
conf = torch.randn(2, 1, 12, 20, generator=g) * 4
gt = torch.rand(2, 1, 12, 20, generator=g) * 40
gt[torch.rand(gt.shape, generator=g) < 0.3] = float("inf")
losses = {
    "laplacian_bounded2": LaplacianLossBounded2()(pred, gt, conf),
    "laplacian": LaplacianLoss()(pred, gt, conf),
    "l1": L1Loss()(pred, gt),
}

tiling = []
for size, overlap in (((24, 40), 0.7), ((48, 100), 0.7), ((40, 150), 0.9)):
    left = torch.rand(1, 3, *size, generator=g)
    right = torch.rand(1, 3, *size, generator=g)
    with torch.no_grad():
        disp, _, _ = tiled_pred(Toy(), None, left, right, None, overlap=overlap, crop=(32, 64),
                                conf_mode="conf_expsigmoid_15_3", with_conf=True)
    tiling.append({"left": left, "right": right, "overlap": overlap, "crop": (32, 64), "disp": disp})

_official.save(Path(__file__).with_name("croco_stereo.pt"), args, {
    "losses": {"pred": pred, "conf": conf, "gt": gt, **losses},
    "tiling": tiling,
})
