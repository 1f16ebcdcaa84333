"""Regenerate ``mae.pt``: MAE forward, loss, masking and learning-rate schedule from the official code.

    python tests/data/golden/mae/regenerate.py --official-root <facebookresearch/mae checkout>

A tiny ``models_mae.MaskedAutoencoderViT`` (32 px, patch 8, encoder 32/2/2, decoder 32/1/2, norm-pix loss) with its
state dict, seeded images, the ``torch.manual_seed`` used right before the forward (it drives
``random_masking``), and the official latent, prediction, mask and loss; plus ``util/lr_sched.adjust_learning_rate``
at every iteration of a 10-epoch run with 4 iterations per epoch and 2 warmup epochs; the names of the
weight-decayed parameters.
"""

import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

args = _official.parse_args("facebookresearch/mae", __doc__)
_official.shim_timm_block()
_official.shim_numpy()

import models_mae  # noqa: E402
from util import lr_sched  # noqa: E402

ARCH = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
            decoder_depth=1, decoder_num_heads=2, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            norm_pix_loss=True)
torch.manual_seed(0)
model = models_mae.MaskedAutoencoderViT(**ARCH).eval()
g = torch.Generator().manual_seed(1)
with torch.no_grad():  # non-trivial biases / norms so key mapping mistakes show
    for p in model.parameters():
        if p.ndim == 1:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
images = torch.randn(2, 3, 32, 32, generator=g)
MASK_SEED = 123
with torch.no_grad():
    torch.manual_seed(MASK_SEED)
    latent, mask, ids_restore = model.forward_encoder(images, 0.75)
    pred = model.forward_decoder(latent, ids_restore)
    loss = model.forward_loss(images, pred, mask)

opt = SimpleNamespace(param_groups=[{"lr": 0.0}])
sched_args = SimpleNamespace(lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10)
lrs = []
for it in range(40):
    lrs.append(lr_sched.adjust_learning_rate(opt, it / 4, sched_args))

# weight-decay groups as main_pretrain.py builds them: timm ``add_weight_decay(model, wd)`` (renamed
# ``param_groups_weight_decay`` in timm >= 0.6, same rule: no decay for 1-D tensors, biases and the skip list)
import timm.optim  # noqa: E402

add_weight_decay = getattr(timm.optim, "add_weight_decay", None) or timm.optim.param_groups_weight_decay
ids = {id(p): n for n, p in model.named_parameters()}
decayed = sorted(ids[id(p)] for grp in add_weight_decay(model, 0.05) if grp["weight_decay"] > 0
                 for p in grp["params"])

arch = {k: v for k, v in ARCH.items() if k != "norm_layer"}
_official.save(Path(__file__).with_name("mae.pt"), args, {
    "arch": arch, "state_dict": model.state_dict(), "images": images, "mask_seed": MASK_SEED, "mask_ratio": 0.75,
    "decayed": decayed, "latent": latent, "mask": mask, "ids_restore": ids_restore, "pred": pred, "loss": loss,
    "lr": {"steps_per_epoch": 4, "epochs": 10, "warmup_epochs": 2, "lr": 1.0, "min_lr": 0.1,
           "values": torch.tensor(lrs, dtype=torch.float64)},
})
