"""Regenerate ``sca.pt``: the SCA-MTL attention blocks of the official code on small fixed inputs.

    python tests/data/golden/sca/regenerate.py --official-root <kimsunkyung/SCA_MTL checkout>

Runs, in eval mode with every parameter and BN buffer set to seeded values rounded to float16:

* ``gca``: ``models/seg_hrnet.py::GlobalContextAttentionBlock(8, 8)``, a 6x6 target attending a 3x3 source;
* ``ctam``: ``models/padnet.py::MultiTaskDistillationModule`` (cross-task attention + shared reduction) for three
  tasks at 18 channels (HRNet-W18's first scale), 6x6 maps;
* ``csam``: ``models/seg_hrnet.py::HighResolutionHead`` (cross-scale attention head) on widths 4-6-8-10 at
  16/8/4/2 pixels. The released head hard-codes a 1080-channel classifier, which matches no wiring of its
  inputs; its ``last_layer`` is rebuilt at run time with the same layers at the width the inputs have
  (6·C0 + 4·C1 + 2·C2 + C3 = 74);
* ``se``: ``models/layers.py::SEBlock`` (r = 16) at 36 and 144 channels (the FPM widths of scales 1 and 3).
"""

import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402
from _packing import pack_state as state  # noqa: E402
from torch import nn  # noqa: E402

args = _official.parse_args("kimsunkyung/SCA_MTL", __doc__)
# models/resnet.py imports torchvision.models.utils (removed in torchvision 0.13); seg_hrnet colours its log lines
sys.modules["torchvision.models.utils"] = types.ModuleType("torchvision.models.utils")
sys.modules["torchvision.models.utils"].load_state_dict_from_url = torch.hub.load_state_dict_from_url
sys.modules.setdefault("termcolor", types.ModuleType("termcolor"))
sys.modules["termcolor"].colored = lambda s, *a, **k: s

from models.layers import SEBlock  # noqa: E402
from models.padnet import MultiTaskDistillationModule  # noqa: E402
from models.seg_hrnet import GlobalContextAttentionBlock, HighResolutionHead  # noqa: E402

TASKS = ["semseg", "normals", "sal"]


@torch.no_grad()
def randomise(module, g):
    bn_scales = {id(m.weight) for m in module.modules() if isinstance(m, nn.BatchNorm2d)}
    for _, p in module.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if id(p) in bn_scales:
            v = 1.0 + 0.1 * r
        elif p.dim() >= 2:
            v = r * 0.7 / p[0].numel() ** 0.5
        else:
            v = 0.1 * r
        p.copy_(v.half().float())
    for name, b in module.named_buffers():
        if name.endswith("running_mean"):
            b.copy_((0.1 * torch.randn(b.shape, generator=g)).half().float())
        elif name.endswith("running_var"):
            b.copy_((1.0 + 0.2 * torch.rand(b.shape, generator=g)).half().float())
    return module.eval()


def rand(g, *shape):
    return torch.randn(*shape, generator=g).half().float()


g = torch.Generator().manual_seed(0)
data = {}
with torch.no_grad():
    gca = randomise(GlobalContextAttentionBlock(8, 8), g)
    tgt, src = rand(g, 2, 8, 6, 6), rand(g, 2, 8, 3, 3)
    data["gca"] = {"state": state(gca), "target": tgt, "source": src, "out": gca(tgt, src)}

    ctam = randomise(MultiTaskDistillationModule(TASKS, TASKS, 18), g)
    feats = {t: rand(g, 1, 18, 6, 6) for t in TASKS}
    out = ctam({f"features_{t}": v for t, v in feats.items()})
    data["ctam"] = {"state": state(ctam), "tasks": TASKS, "features": feats, "out": out}

    widths = [4, 6, 8, 10]
    head = HighResolutionHead(widths, 3)
    total = 6 * widths[0] + 4 * widths[1] + 2 * widths[2] + widths[3]
    head.last_layer = nn.Sequential(nn.Conv2d(total, total, 1), nn.BatchNorm2d(total, momentum=0.1), nn.ReLU(),
                                    nn.Conv2d(total, 3, 1))
    head = randomise(head, g)
    ms = [rand(g, 1, c, 16 >> s, 16 >> s) for s, c in enumerate(widths)]
    data["csam"] = {"state": state(head), "widths": widths, "out_channels": 3, "features": ms, "out": head(ms)}

    data["se"] = {}
    for c in (36, 144):
        se = randomise(SEBlock(c), g)
        x = rand(g, 1, c, 3, 3)
        data["se"][c] = {"state": state(se), "x": x, "out": se(x)}

print({k: data[k]["state"]["flat"].numel() for k in ("gca", "ctam", "csam")})
_official.save(Path(__file__).with_name("sca.pt"), args, data)
