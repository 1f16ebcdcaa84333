"""Regenerate ``strong.pt``: DACS/MIC strong augmentation from the official code with the kornia it pins.

    python tests/data/golden/dacs/regenerate.py --official-root <lhoyer/DAFormer checkout> --site <kornia 0.5.8>

``--site`` must put kornia 0.5.8 (``requirements.txt`` of DAFormer and MIC) ahead of a newer one (its source
``kornia/`` folder is pure Python). Runs ``mmseg/models/utils/dacs_transforms.py::strong_transform`` (loaded
from its file: it needs only torch, numpy and kornia) on seeded ImageNet-normalised images (2 x 3 x 32 x 48,
kernel 3 x 5), with ``color_jitter_s = 0.2``:

* ``dacs``: one call per image, as ``dacs.py`` augments the mixed images (``u_cj = u_b = 0.9``: jitter and
  blur), and once with jitter only (``u_b = 0.1``);
* ``mic``: one call on the batch, as ``masking_consistency_module.py`` augments the target images.

Stored: the inputs, the parameters the official call drew (kornia's per-image factors and op order, NumPy's
blur sigma) and the outputs, so a test can replay the same parameters.
"""

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402

args = _official.parse_args("lhoyer/DAFormer", __doc__)

import kornia  # noqa: E402
import numpy as np  # noqa: E402

assert not hasattr(kornia.augmentation, "ColorJiggle"), "kornia 0.5.8 must come first on the path (--site)"
spec = importlib.util.spec_from_file_location(
    "dacs_transforms", args.official_root / "mmseg" / "models" / "utils" / "dacs_transforms.py")
dt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dt)

drawn: dict[str, list] = {"jitter": [], "sigma": []}
_apply = kornia.augmentation.ColorJitter.apply_transform


def recording_apply(self, input, params, transform=None):
    drawn["jitter"].append({k: v.clone() for k, v in params.items() if k != "batch_prob"})
    return _apply(self, input, params, transform)


kornia.augmentation.ColorJitter.apply_transform = recording_apply
_uniform = np.random.uniform


def recording_uniform(*a, **k):
    v = _uniform(*a, **k)
    drawn["sigma"].append(float(v))
    return v


np.random.uniform = recording_uniform

mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
g = torch.Generator().manual_seed(0)
pixels = torch.rand(2, 3, 32, 48, generator=g) * 255
pixels[:, :, :4] = 255.0  # saturated rows exercise the clamps
pixels[:, :, -4:] = 0.0
images = (pixels - mean) / std
torch.manual_seed(0)
np.random.seed(0)


def params(u_cj, u_b):
    return {"mix": None, "color_jitter": u_cj, "color_jitter_s": 0.2, "color_jitter_p": 0.2, "blur": u_b,
            "mean": mean, "std": std}


def take():
    out = {"factors": torch.stack([torch.stack([j["brightness_factor"], j["contrast_factor"], j["saturation_factor"],
                                                j["hue_factor"]], 1) for j in drawn["jitter"]]),
           "order": torch.stack([j["order"] for j in drawn["jitter"]]),
           "sigma": torch.tensor(drawn["sigma"], dtype=torch.float64)}
    drawn["jitter"].clear()
    drawn["sigma"].clear()
    return out


cases = {}
with torch.no_grad():
    outs = [dt.strong_transform(params(0.9, 0.9), data=images[i:i + 1].clone())[0] for i in range(2)]
    cases["dacs"] = {"u": (0.9, 0.9), "output": torch.cat(outs), **take()}
    outs = [dt.strong_transform(params(0.9, 0.1), data=images[i:i + 1].clone())[0] for i in range(2)]
    cases["dacs_jitter_only"] = {"u": (0.9, 0.1), "output": torch.cat(outs), **take()}
    out = dt.strong_transform(params(0.9, 0.9), data=images.clone())[0]
    cases["mic"] = {"u": (0.9, 0.9), "output": out, **take()}

_official.save(Path(__file__).with_name("strong.pt"), args, {"images": images, "color_jitter_s": 0.2, **cases},
               kornia="0.5.8")
