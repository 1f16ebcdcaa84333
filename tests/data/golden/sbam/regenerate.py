"""Regenerate ``sbam.pt``: SBAM salience-guided masking with the adaptive ratio from the official code.

    python tests/data/golden/sbam/regenerate.py --official-root <doihye/SBAM checkout>

Calls ``models_mae.MaskedAutoencoderViT.saliency_guided_masking`` on seeded patch tokens (its undefined global
``mask_ratio`` is set to the base ratio, which is what the code intends) after ``torch.manual_seed``; stores the
tokens, the seed, the mask and the normalised salience. Cases: ordinary tokens at two thresholds, and tokens with
huge norms whose self-affinity softmax is one-hot (degenerate salience: 0/0 in the official code).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("doihye/SBAM", __doc__)
_official.shim_timm_block()

import models_mae  # noqa: E402

g = torch.Generator().manual_seed(0)
cases = []
for name, scale, base, var, delta in (("ordinary", 0.25, 0.75, 0.1, 0.5), ("ordinary_low_delta", 0.25, 0.6, 0.2, 0.2),
                                      ("degenerate", 30.0, 0.75, 0.1, 0.5)):
    x = torch.randn(3, 49, 32, generator=g) * scale
    models_mae.mask_ratio = base  # the official function reads this (undefined) global
    seed = 7
    torch.manual_seed(seed)
    _, mask, ids_restore = models_mae.MaskedAutoencoderViT.saliency_guided_masking(None, x, base, var, delta)
    aff = torch.softmax(x @ x.transpose(1, 2), dim=2).sum(1)
    cases.append({"name": name, "tokens": x, "seed": seed, "base": base, "variation": var, "delta": delta,
                  "mask": mask, "ids_restore": ids_restore, "len_keep": int((mask == 0).sum(1)[0]),
                  "affinity_colsum": aff})

_official.save(Path(__file__).with_name("sbam.pt"), args, {"cases": cases})
