"""Regenerate ``sgmim.pt``: SG-MIM depth branch, fusion block, heads and loss from the official code.

    python tests/data/golden/sgmim/regenerate.py --official-root <Ho1guma/SG-MIM checkout at 352a6f2>

Uses the first commit (``352a6f2``, MLP-only depth encoder; later commits need MinkowskiEngine). The image encoder
is replaced by given tokens ``z`` (B=1, 6x6x1024, seeded); everything after it is the official ``SGMIM.forward``:
``Depth_Encoder`` (PatchEmbed 4 px -> 128, selective masking with the image mask, 3 PatchMerging) ->
``Fusion_blk(1024, 4, nn.LayerNorm)`` -> image / depth PixelShuffle heads -> complementary L1 losses. Weights are
filled deterministically by :func:`fill` (same function in the test) so no state dict is stored.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

args = _official.parse_args("Ho1guma/SG-MIM", __doc__)
import timm.data.transforms as _tdt  # noqa: E402

if not hasattr(_tdt, "_pil_interp"):
    _tdt._pil_interp = lambda method: method

import types  # noqa: E402

import timm.layers  # noqa: E402

# newer timm moved ``timm.models.layers.helpers``; alias it for the official import
sys.modules.setdefault("timm.models.layers.helpers", types.SimpleNamespace(to_2tuple=timm.layers.to_2tuple))
from data.data_sgmim import MaskGenerator  # noqa: E402
from models.sgmim import SGMIM, Depth_Encoder, Fusion_blk  # noqa: E402


def fill(named_shapes, seed):
    """Deterministic weights in the given (name, shape) order: matrices ~ N(0, 1/fan_in), LayerNorm weights
    1 + N(0, 0.1^2), vectors N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in named_shapes:
        t = torch.randn(shape, generator=g)
        if len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            t = t / fan_in**0.5
        elif "norm" in name and name.endswith("weight"):
            t = 1 + 0.1 * t
        else:
            t = 0.1 * t
        out[name] = t
    return out


depth_enc, fusion = Depth_Encoder(), Fusion_blk(1024, 4, nn.LayerNorm)
img_dec = nn.Sequential(nn.Conv2d(1024, 32 * 32 * 3, 1), nn.PixelShuffle(32))
dep_dec = nn.Sequential(nn.Conv2d(1024, 32 * 32 * 1, 1), nn.PixelShuffle(32))
parts = {"depth_encoder": depth_enc, "fusion": fusion, "img_decoder": img_dec, "dep_decoder": dep_dec}
shapes = {k: [(n, tuple(v.shape)) for n, v in m.state_dict().items()] for k, m in parts.items()}
for i, (k, m) in enumerate(parts.items()):
    m.load_state_dict(fill(shapes[k], seed=10 + i))

g = torch.Generator().manual_seed(0)
z = torch.randn(1, 36, 1024, generator=g)
x = torch.randn(1, 3, 192, 192, generator=g)
y = torch.rand(1, 1, 192, 192, generator=g)
np.random.seed(0)
mask = torch.from_numpy(MaskGenerator(192, 32, 4, 0.6)())[None]  # (1, 48, 48), 1 = masked

stub = SimpleNamespace(encoder=lambda img, m: z, depth_encoder=depth_enc, fusion_blk_img=fusion,
                       img_decoder=img_dec, dep_decoder=dep_dec, patch_size=4, in_chans=3)
stub.reshape_to_patch = lambda t: SGMIM.reshape_to_patch(stub, t)
captured = {}
fusion.register_forward_hook(lambda m, i, o: captured.update(z_depth=i[1], fused=o))
with torch.no_grad():
    loss, img_loss, dep_loss = SGMIM.forward(stub, x, y, mask)

_official.save(Path(__file__).with_name("sgmim.pt"), args, {
    "shapes": shapes, "seeds": {k: 10 + i for i, k in enumerate(parts)}, "input_seed": 0,
    "mask": mask.to(torch.uint8), "z_depth": captured["z_depth"], "fused": captured["fused"],
    "loss": loss, "img_loss": img_loss, "dep_loss": dep_loss,
})
