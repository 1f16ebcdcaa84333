"""Regenerate ``croco.pt``: RoPE2D and the CroCo-Stereo binocular forward from the official code.

    python tests/data/golden/croco/regenerate.py --official-root <naver/croco checkout> [--site <dir with einops>]

Stores: RoPE2D (base 100) applied to seeded tokens at integer positions; a tiny ``CroCoDownstreamBinocular``
(RoPE100, encoder 32/2/2, decoder 32/2/2, DPT hooks [0, 1, 2, 3], layer_dims [4, 8, 12, 16], feature_dim 8,
last_dim 4, 2 output channels) with its complete official state dict, a seeded 32x64 pair and its output
(disparity + confidence); and the key names/shapes of an official pre-training ``CroCoNet`` of the same size.
"""

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("naver/croco", __doc__)

import models.head_downstream as hd  # noqa: E402
from models.croco import CroCoNet  # noqa: E402
from models.croco_downstream import CroCoDownstreamBinocular  # noqa: E402
from models.dpt_block import DPTOutputAdapter  # noqa: E402
from models.pos_embed import RoPE2D  # noqa: E402

# the official head does not expose feature_dim / last_dim; shrink them so the stored state dict stays small
hd.DPTOutputAdapter = partial(DPTOutputAdapter, feature_dim=8, last_dim=4)

ARCH = dict(img_size=(32, 64), patch_size=16, enc_embed_dim=32, enc_depth=2, enc_num_heads=2,
            dec_embed_dim=32, dec_depth=2, dec_num_heads=2, pos_embed="RoPE100")
HOOKS = [0, 1, 2, 3]
LAYER_DIMS = [4, 8, 12, 16]

# ---- RoPE2D
g = torch.Generator().manual_seed(0)
tokens = torch.randn(2, 2, 12, 16, generator=g)  # (B, heads, N, Dh)
pos = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij"), -1).reshape(1, 12, 2)
pos = pos.expand(2, -1, -1).clone()
pos[1] = pos[1].flip(0) * 3  # non-grid positions too
rope_out = RoPE2D(freq=100.0)(tokens, pos)

# ---- binocular forward
torch.manual_seed(0)
head = hd.PixelwiseTaskWithDPT(hooks_idx=HOOKS, layer_dims=LAYER_DIMS)
head.num_channels = 2
model = CroCoDownstreamBinocular(head, **ARCH).eval()
# non-trivial biases / norms (the official init sets them to 0 / 1, which would hide mapping mistakes)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias") or (p.ndim == 1):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
state = model.state_dict()  # aliases keep sharing storage, saved once
left = torch.randn(2, 3, 32, 64, generator=g)
right = torch.randn(2, 3, 32, 64, generator=g)
with torch.no_grad():
    out = model(left, right)

# ---- pre-training checkpoint layout (names and shapes only)
pre = CroCoNet(**ARCH)
pretrain_keys = {k: tuple(v.shape) for k, v in pre.state_dict().items()}

_official.save(Path(__file__).with_name("croco.pt"), args, {
    "rope": {"tokens": tokens, "pos": pos, "out": rope_out, "base": 100.0},
    "binocular": {"arch": ARCH, "hooks": HOOKS, "layer_dims": LAYER_DIMS, "feature_dim": 8, "last_dim": 4,
                  "state_dict": state, "left": left, "right": right, "out": out},
    "pretrain_keys": pretrain_keys,
})
