"""Regenerate ``daformer.pt``: the DAFormer decode head's initialisation and forward from the official code.

    python tests/data/golden/daformer/regenerate.py --official-root <lhoyer/DAFormer checkout> --site <mmcv 1.3.7>

``--site`` must make ``mmcv`` 1.3.7 importable as pure Python (its ``mmcv/`` source folder, no compiled ops;
plus ``addict`` and ``yapf``). Runs ``mmseg/models/decode_heads/daformer_head.py::DAFormerHead`` with the
decode-head settings of ``configs/_base_/models/daformer_sepaspp_mitb5.py``:

* ``init``: the full-size head (in_channels (64, 128, 320, 512), 256 channels, 19 classes) built with seed 0
  and ``init_weights()`` called as mmseg's training does; stored: mean and std of every weight and bias;
* ``forward``: a small head (in_channels (8, 16, 32, 32), 16 channels, 5 classes) whose BN running statistics
  are set to seeded random values; stored: its state dict (official key names), four seeded feature maps at
  strides 4..32 of a 32x48 image and the eval-mode logits (stride 4).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("lhoyer/DAFormer", __doc__)

from mmseg.models.decode_heads.daformer_head import DAFormerHead  # noqa: E402


def build(in_channels, channels, num_classes):
    norm_cfg = dict(type="BN", requires_grad=True)
    mlp = dict(type="mlp", act_cfg=None, norm_cfg=None)
    return DAFormerHead(
        in_channels=list(in_channels), in_index=[0, 1, 2, 3], channels=channels, dropout_ratio=0.1,
        num_classes=num_classes, norm_cfg=norm_cfg, align_corners=False,
        decoder_params=dict(embed_dims=channels, embed_cfg=mlp, embed_neck_cfg=mlp,
                            fusion_cfg=dict(type="aspp", sep=True, dilations=(1, 6, 12, 18), pool=False,
                                            act_cfg=dict(type="ReLU"), norm_cfg=norm_cfg)),
        loss_decode=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0))


torch.manual_seed(0)
full = build((64, 128, 320, 512), 256, 19)
full.init_weights()
init = {k: {"mean": v.float().mean().item(), "std": v.float().std().item(), "shape": tuple(v.shape)}
        for k, v in full.named_parameters()}

torch.manual_seed(1)
small = build((8, 16, 32, 32), 16, 5)
small.init_weights()
g = torch.Generator().manual_seed(2)
with torch.no_grad():
    for m in small.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
small.eval()
feats = [torch.randn(2, c, 32 // s, 48 // s, generator=g) for c, s in zip((8, 16, 32, 32), (4, 8, 16, 32))]
with torch.no_grad():
    logits = small(feats)
state = {k: v.clone() for k, v in small.state_dict().items() if not k.endswith("num_batches_tracked")}

_official.save(Path(__file__).with_name("daformer.pt"), args,
               {"init": init, "forward": {"state_dict": state, "features": feats, "logits": logits}})
