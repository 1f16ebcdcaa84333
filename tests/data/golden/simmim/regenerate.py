"""Regenerate ``simmim.pt``: SimMIM mask law, decoder + loss, initialisation and weight-decay groups from the
official code.

    python tests/data/golden/simmim/regenerate.py --official-root <microsoft/SimMIM checkout>

* ``data/data_simmim.MaskGenerator`` masks (numpy seed 0) for two geometries, with their masked-cell counts.
* A tiny ``VisionTransformerForSimMIM`` (32 px, patch 8, 32/2/2, LayerScale 0.1, learned positions) inside
  ``models/simmim.SimMIM``: the encoder output ``z``, the decoder weights, the reconstruction and the loss.
* Initialisation statistics (std, max |w|) per parameter of a ``VisionTransformerForSimMIM`` (96/4/4, seed 0).
* Parameter names with / without weight decay from ``optimizer.get_pretrain_param_groups`` with the model's
  ``no_weight_decay()`` list.
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("microsoft/SimMIM", __doc__)
import timm.data.transforms as _tdt  # noqa: E402

if not hasattr(_tdt, "_pil_interp"):  # removed from newer timm; only imported by the fine-tuning data module
    _tdt._pil_interp = lambda method: method

from data.data_simmim import MaskGenerator  # noqa: E402
from models.simmim import SimMIM, VisionTransformerForSimMIM  # noqa: E402
from optimizer import get_pretrain_param_groups  # noqa: E402

masks = []
for input_size, mask_patch, model_patch, ratio in ((32, 16, 8, 0.6), (192, 32, 4, 0.6), (224, 32, 16, 0.6)):
    np.random.seed(0)
    gen = MaskGenerator(input_size, mask_patch, model_patch, ratio)
    m = np.stack([gen() for _ in range(8)])
    masks.append({"input_size": input_size, "mask_patch": mask_patch, "model_patch": model_patch, "ratio": ratio,
                  "mask_count": gen.mask_count, "masks": torch.from_numpy(m.astype(np.uint8))})

torch.manual_seed(0)
enc = VisionTransformerForSimMIM(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0,
                                 init_values=0.1, use_abs_pos_emb=True, qkv_bias=True)
model = SimMIM(encoder=enc, encoder_stride=8).eval()
g = torch.Generator().manual_seed(1)
x = torch.randn(2, 3, 32, 32, generator=g)
mask = torch.from_numpy(np.stack([MaskGenerator(32, 16, 8, 0.6)() for _ in range(2)]))
with torch.no_grad():
    z = model.encoder(x, mask)
    x_rec = model.decoder(z)
    loss = model(x, mask)
decoder_state = {k: v for k, v in model.decoder.state_dict().items()}

torch.manual_seed(0)
big = VisionTransformerForSimMIM(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=4, num_classes=0,
                                 init_values=0.1, use_abs_pos_emb=True, qkv_bias=True)
init_stats = {k: (float(v.std()), float(v.abs().max())) for k, v in big.named_parameters() if v.ndim > 1}

full = SimMIM(encoder=big, encoder_stride=8)
groups = get_pretrain_param_groups(full, logging.getLogger("simmim"), full.no_weight_decay(), ())
ids = {id(p): n for n, p in full.named_parameters()}
decay = sorted(ids[id(p)] for p in groups[0]["params"])
no_decay = sorted(ids[id(p)] for p in groups[1]["params"])

_official.save(Path(__file__).with_name("simmim.pt"), args, {
    "masks": masks,
    "forward": {"x": x, "mask": mask, "z": z, "decoder_state": decoder_state, "x_rec": x_rec, "loss": loss,
                "stride": 8},
    "init_stats": init_stats, "init_arch": {"embed_dim": 96, "depth": 4, "num_heads": 4, "patch_size": 8,
                                            "img_size": 32, "init_values": 0.1},
    "decay": decay, "no_decay": no_decay,
})
