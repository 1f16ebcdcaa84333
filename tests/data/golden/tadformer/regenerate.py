"""Regenerate ``tadformer.pt``: TADFormer forward passes and parameter counts from the official code.

    python tests/data/golden/tadformer/regenerate.py --official-root <Min100KM/TADFormer checkout> --site <einops, termcolor>

Builds the official ``SwinTransformerTADFormer`` + ``MultiTaskSwin`` (HRNet heads) on a tiny Swin (embed 4,
depths 2-2-2-2, heads 1-1-2-2, window 4, 64x64 input, rank 4, two tasks, decoder widths 4), sets every
parameter and BN buffer to seeded random values rounded to float16 (so LoRA B, gates and every branch are
non-zero; the static variant shares every weight but its filters), and records in eval mode the per-stage task
features and the decoder outputs (every fourth pixel, to keep the file small) of three variants:

* ``dynamic``: the released code with the paper's dynamic task filter put back (the ``DTF`` line that
  ``TAModuleLinear`` comments out: one task-shared ``DTF`` per layer instead of the per-task ``NaiveConvFilter``);
* ``static``: the released code as it is (per-task static depthwise filter);
* ``clean``: ``dynamic`` with the two released quirks patched out at run time: the TPC skip feature is turned
  token-major before the block ``.view``s it, and FilterNorm divides by the biased std + 1e-5.

It also counts the trainable parameters the way ``main.py`` does (``mark_only_lora_as_trainable`` with the
r16/32/64 configs' freezing: reductions frozen) for Swin-T at 448 with the four PASCAL tasks, dynamic and static.
"""

import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402
from _packing import pack_state as state  # noqa: E402
from _packing import unpack_state as unpack  # noqa: E402
from torch import nn  # noqa: E402

args = _official.parse_args("Min100KM/TADFormer", __doc__)
sys.modules.setdefault("ptflops", types.ModuleType("ptflops"))  # seg_hrnet imports it for FLOP counts only
sys.modules["ptflops"].get_model_complexity_info = None

from models import lora as official_lora  # noqa: E402
from models.swin_mtl import MultiTaskSwin  # noqa: E402
from models.swin_transformer_tadformer import SwinTransformerTADFormer  # noqa: E402

TINY = dict(img_size=64, embed_dim=4, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2], window_size=4)
TASKS, NUM_OUT = ["semseg", "normals"], {"semseg": 5, "normals": 3}


class SharedFilter(nn.Module):
    """Stands in for the per-task ``ModuleDict``: every task key returns the one task-shared DTF."""

    def __init__(self, dtf: nn.Module) -> None:
        super().__init__()
        self.m = dtf

    def __getitem__(self, task):
        return self.m


def tadmtl(rank):
    return NS(ENABLED=True, R=[rank] * 4, SHARED_SCALE=[4.0] * 4, TASK_SCALE=[4.0] * 4, DROPOUT=[0.05] * 4,
              TRAINABLE_SCALE_SHARED=False, INTERMEDIATE_SPECIALIZATION=False, SHARED_MODE="matrix",
              DTF=NS(ENABLED=True), TPC=NS(ENABLED=True, PROMPT_CFG=NS(PERTASK_LEN=1)),
              ABLATION=NS(SKIPCONNECTION=True, STAGEWISEGATING=True))


def build(rank, tasks, num_out, dynamic, swin=TINY, channels=(4, 4, 4, 4)):
    t = tadmtl(rank)
    backbone = SwinTransformerTADFormer(num_classes=0, drop_path_rate=0.0, tasks=tasks, tadmtl=t,
                                        prompt_cfg=t.TPC.PROMPT_CFG, **swin)
    if dynamic:
        for m in backbone.modules():
            if isinstance(m, official_lora.TAModuleLinear) and isinstance(m.lora_filter, nn.ModuleDict):
                r = m.shared_r
                m.lora_filter = SharedFilter(official_lora.DTF(r, kernel_size=3, stride=1, padding=1, groups=r,
                                                               prompt_cfg=m.prompt_cfg))
    cfg = NS(TASKS=tasks, TASKS_CONFIG=NS(ALL_TASKS=NS(NUM_OUTPUT=num_out)),
             MODEL=NS(DECODER_CHANNELS=list(channels), DECODER_DOWNSAMPLER=True, PER_TASK_DOWNSAMPLER=True,
                      TADMTL=t, DECODER_HEAD={}, SWIN=NS(WINDOW_SIZE=swin["window_size"])),
             DATA=NS(IMG_SIZE=swin["img_size"]))
    return MultiTaskSwin(backbone, cfg)


def count(model):
    official_lora.mark_only_lora_as_trainable(model.backbone, bias="none", freeze_patch_embed=False,
                                              freeze_norm=False, free_relative_bias=False,
                                              freeze_downsample_reduction=True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if name.endswith("task_prompts"):
            v = 1.0 + r
        elif ("norm" in name or name.endswith(".1.weight")) and name.endswith("weight") and p.dim() == 1:
            v = 1.0 + 0.1 * r  # LayerNorm / BatchNorm scales
        elif p.dim() >= 2:
            v = r * 0.7 / p[0].numel() ** 0.5
        elif "chan_FilterNorm.std" in name:
            v = r * 2 ** 0.5 / 3
        else:
            v = 0.1 * r if not name.endswith(("chan_FilterNorm.mean", "prompt_gate")) else r
        p.copy_(v.half().float())
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_((0.1 * torch.randn(b.shape, generator=g)).half().float())
        elif name.endswith("running_var"):
            b.copy_((1.0 + 0.2 * torch.rand(b.shape, generator=g)).half().float())


def clean_patches():
    """Patch the two released quirks out (``clean`` variant)."""
    def filter_norm(self, x):
        b, c = x.size(0), self.in_channels
        x = x.reshape(b, c, -1)
        x = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, unbiased=False, keepdim=True) + 1e-5)
        return x.reshape(b, -1) * self.std[None, :] + self.mean[None, :]

    forward = official_lora.TAModuleLinear.forward

    def ta_forward(self, *a, **k):
        out = forward(self, *a, **k)
        if self.layer_name == "proj" and self.tasks is not None and hasattr(self, "task_skip_feature"):
            for t in self.tasks:  # (B·nW, C, n) -> (B·nW, n, C): the block's .view then sees token-major memory
                self.task_skip_feature[t] = self.task_skip_feature[t].transpose(1, 2).contiguous()
        return out

    official_lora.FilterNorm.forward = filter_norm
    official_lora.TAModuleLinear.forward = ta_forward


@torch.no_grad()
def run(model, image):
    model.eval()
    stages = model.backbone(image, return_stages=True)
    feats = {t: [tl[t].clone() for _, tl in stages] for t in TASKS}
    return {"features": feats, "outputs": {t: o[..., ::4, ::4].clone() for t, o in model(image).items()}}


torch.manual_seed(0)
image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)).half().float()
cases = {}
model = build(4, TASKS, NUM_OUT, True)
randomise(model, seed=2)
cases["dynamic"] = {"state": state(model), **run(model, image)}
shared = unpack(cases["dynamic"]["state"])
model = build(4, TASKS, NUM_OUT, False)
randomise(model, seed=3)
model.load_state_dict({k: v for k, v in shared.items() if "lora_filter" not in k}, strict=False)
filters = state(model, keep=lambda k: "lora_filter" in k)
cases["static"] = {"filters": filters, **run(model, image)}

counts = {}
for variant, dynamic in (("dynamic", True), ("static", False)):
    for rank in (16, 32, 64) if dynamic else (64,):
        if True:  # built on the CPU: the official constructor calls .item()
            m = build(rank, ["semseg", "human_parts", "sal", "normals"],
                      {"semseg": 21, "human_parts": 7, "sal": 1, "normals": 3}, dynamic,
                      swin=dict(img_size=448, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                window_size=7), channels=(18, 36, 72, 144))
        counts[f"{variant}_r{rank}"] = count(m)
print(counts)

clean_patches()
model = build(4, TASKS, NUM_OUT, True)
model.load_state_dict(shared, strict=False)
cases["clean"] = run(model, image)

_official.save(Path(__file__).with_name("tadformer.pt"), args,
               {"image": image.half(), "tasks": TASKS, "num_outputs": NUM_OUT, "swin": TINY, "rank": 4,
                "cases": cases, "counts": counts})
