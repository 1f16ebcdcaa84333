"""Regenerate ``pieces.pt``: DACS/DAFormer pieces from the official code (run beside ``regenerate.py``).

    python tests/data/golden/dacs/regenerate_pieces.py --official-root <lhoyer/DAFormer checkout> --site <mmcv 1.3.7>

``--site``: mmcv 1.3.7 as pure Python (its ``mmcv/`` folder, plus ``addict`` and ``yapf``). Stored, on seeded
inputs: ``mmseg/utils/utils.py::downscale_label_ratio`` (scale 8, min ratio 0.75) and the feature distance of
``mmseg/models/uda/dacs.py`` (``calc_feat_dist``'s mask on thing classes + ``masked_feat_dist``); the weighted
mmseg ``CrossEntropyLoss`` after the decode head's bilinear resize (ignore 255); ``DACS._update_ema`` over four
steps (alpha 0.99) of a small conv+BN network; mmcv's ``PolyLrUpdaterHook`` (power 1, min_lr 0, linear
warm-up 1500 iterations from 1e-6) over 40000 iterations at lr 6e-5; ``get_class_masks``' candidate classes
and the number it picks per image.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("lhoyer/DAFormer", __doc__)

import numpy as np  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmcv.runner.hooks.lr_updater import PolyLrUpdaterHook  # noqa: E402
from mmseg.models.losses import CrossEntropyLoss  # noqa: E402
from mmseg.models.uda.dacs import DACS  # noqa: E402
from mmseg.models.utils import dacs_transforms  # noqa: E402
from mmseg.utils.utils import downscale_label_ratio  # noqa: E402

g = torch.Generator().manual_seed(0)
out = {}

# -- feature distance ----------------------------------------------------------------------------------
labels = torch.randint(0, 19, (2, 1, 8, 8), generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3)
labels[:, :, :6, :6] = 255
noise = torch.rand(labels.shape, generator=g) < 0.15
labels = torch.where(noise, torch.randint(0, 19, labels.shape, generator=g), labels)
down = downscale_label_ratio(labels, 8, 0.75, 19, 255).long()
feat, ref = torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 16, 8, 8, generator=g)
things = torch.tensor([6, 7, 11, 12, 13, 14, 15, 16, 17, 18])
mask = torch.any(down[..., None] == things, -1)
fd = DACS.masked_feat_dist(None, feat, ref, mask)
out["feature_distance"] = {"labels": labels[:, 0], "down": down[:, 0], "feat": feat, "ref": ref, "fd": fd}

# -- weighted CE ----------------------------------------------------------------------------------------
logits = torch.randn(2, 5, 8, 12, generator=g)
target = torch.randint(0, 5, (2, 1, 32, 48), generator=g)
target[:, :, :5] = 255
weight = torch.rand(2, 32, 48, generator=g)
up = F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
ce = CrossEntropyLoss()(up, target[:, 0], weight=weight, ignore_index=255)
out["ce"] = {"logits": logits, "target": target[:, 0], "weight": weight, "loss": ce}

# -- EMA teacher ---------------------------------------------------------------------------------------
torch.manual_seed(0)
student = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
fake = SimpleNamespace(alpha=0.99, get_ema_model=lambda: teacher, get_model=lambda: student)
init = {k: v.clone() for k, v in student.state_dict().items()}
for p in teacher.parameters():  # as DACS._init_ema_weights
    p.detach_()
teacher.load_state_dict(student.state_dict())
students, teachers = [], []
for it in range(1, 5):
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    students.append({k: v.clone() for k, v in student.state_dict().items()})
    DACS._update_ema(fake, it)
    teachers.append({k: v.clone() for k, v in teacher.state_dict().items()})
out["ema"] = {"alpha": 0.99, "init": init, "students": students, "teachers": teachers}

# -- poly + warm-up ----------------------------------------------------------------------------------------
hook = PolyLrUpdaterHook(power=1.0, min_lr=0.0, by_epoch=False, warmup="linear", warmup_iters=1500,
                         warmup_ratio=1e-6)
iters = [0, 1, 10, 749, 1499, 1500, 1501, 20000, 39999]
lrs = []
for it in iters:
    regular = hook.get_lr(SimpleNamespace(iter=it, max_iters=40000), 6e-5)
    hook.regular_lr = [regular]
    lrs.append(hook.get_warmup_lr(it)[0] if it < 1500 else regular)
out["poly"] = {"iters": iters, "lr": torch.tensor(lrs, dtype=torch.float64), "base_lr": 6e-5, "max_iters": 40000}

# -- ClassMix draws -----------------------------------------------------------------------------------------
np.random.seed(0)
picks = []
_choice = np.random.choice
np.random.choice = lambda n, k, replace=True: picks.append((int(n), int(k))) or _choice(n, k, replace=replace)
cm_labels = torch.randint(0, 4, (3, 1, 6, 6), generator=g)
cm_labels[0, 0, :2] = 255
cm_labels[1] = 7
masks = dacs_transforms.get_class_masks(cm_labels)
np.random.choice = _choice
out["classmix"] = {"labels": cm_labels[:, 0], "candidates": [n for n, _ in picks], "picked": [k for _, k in picks],
                   "masks": torch.cat(masks)[:, 0]}

_official.save(Path(__file__).with_name("pieces.pt"), args, out)
