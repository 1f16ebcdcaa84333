"""Regenerate ``mtl_metrics.pt``: the normals and saliency meters and the balanced BCE of the official MTLoRA code.

    python tests/data/golden/mtl_metrics/regenerate.py --official-root <scale-lab/MTLoRA checkout>

Feeds ``evaluation/eval_normals_v1.py::NormalsMeterV1`` (the reported ``mean``) and ``eval_normals_v2.py::
NormalsMeterV2`` (``mean_v2``) two batches of seeded predictions (unit normals in the meters' 0-255 encoding)
against 8-bit-quantised ground truth with invalid pixels (255 in every channel).

Saliency: ``evaluation/eval_sal.py::SaliencyMeter`` (MTI-Net's no-beta meter: ``mIoU``, ``maxF``; InvPT's beta
meter: ``Beta maxF``) on two batches of seeded logits through ``evaluation/evaluate_utils.py::get_output`` (255 x
sigmoid), one image with empty ground truth. Loss: ``mtl_loss_schemes.py::BalancedCrossEntropyLoss`` (the sal
loss, ``size_average=True``) on a 0/1 target and on the same target with 255 pixels.
"""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("scale-lab/MTLoRA", __doc__)
from evaluation.eval_normals_v1 import NormalsMeterV1  # noqa: E402
from evaluation.eval_normals_v2 import NormalsMeterV2  # noqa: E402
from evaluation.eval_sal import SaliencyMeter  # noqa: E402
from evaluation.evaluate_utils import get_output  # noqa: E402
from mtl_loss_schemes import BalancedCrossEntropyLoss  # noqa: E402

g = torch.Generator().manual_seed(0)
v1, v2, batches = NormalsMeterV1(), NormalsMeterV2(), []
for _ in range(2):
    p = torch.nn.functional.normalize(torch.randn(2, 3, 16, 16, generator=g), dim=1)
    n = torch.nn.functional.normalize(p + 0.6 * torch.randn(2, 3, 16, 16, generator=g), dim=1)
    gt = 2 * torch.round((n + 1) * 255 / 2) / 255 - 1  # PNG pseudo-GT: 8 bits per component
    invalid = torch.rand(2, 1, 16, 16, generator=g) < 0.2
    gt = torch.where(invalid, torch.full_like(gt, 255.0), gt)
    pred = (p + 1) * 255 / 2  # the meters' input: (B, H, W, 3) in 0..255
    pred = pred.permute(0, 2, 3, 1).contiguous()
    v1.update(pred.clone(), gt.clone())
    v2.update(pred.clone(), gt.clone())
    batches.append({"pred": p, "gt": gt})
s1, s2 = v1.get_score(verbose=False), v2.get_score(verbose=False)
print(s1["mean"], s2["mean"], math.isfinite(s1["mean"]))

meter, sal_batches = SaliencyMeter(), []
for k in range(2):
    logits = 2.5 * torch.randn(3, 1, 16, 16, generator=g)
    gt = (torch.sigmoid(logits + 2.0 * torch.randn(3, 1, 16, 16, generator=g)) > 0.5).float()
    if k == 1:
        gt[0] = 0.0  # an image without salient pixels
    meter.update(get_output(logits, "sal"), gt)
    sal_batches.append({"logits": logits, "gt": gt})
sal = meter.get_score(verbose=False)
print(sal)

bce = BalancedCrossEntropyLoss(size_average=True)
logits = 2.0 * torch.randn(2, 1, 16, 16, generator=g)
target = (torch.rand(2, 1, 16, 16, generator=g) < 0.3).float()
void = target.clone()
void[:, :, :3] = 255.0  # border fill of an augmentation with fill 255
loss = {"logits": logits, "target": target, "target_255": void,
        "loss": float(bce(logits, target)), "loss_255": float(bce(logits, void))}
print(loss["loss"], loss["loss_255"])
_official.save(Path(__file__).with_name("mtl_metrics.pt"), args,
               {"normals": {"batches": batches, "mean_v1": s1["mean"], "mean_v2": s2["mean"],
                            "11.25": s1["11.25"], "22.5": s1["22.5"], "30": s1["30"]},
                "saliency": {"batches": sal_batches, "mIoU": sal["mIoU"], "maxF": sal["maxF"],
                             "beta_maxF": sal["Beta maxF"]},
                "sal_loss": loss})
