"""Regenerate ``mtlora.pt``: MTLoRA layer and tiny-model forward passes and parameter counts from the official code.

    python tests/data/golden/mtlora/regenerate.py --official-root <scale-lab/MTLoRA checkout>

Records, with the official ``models/lora.py`` and ``models/swin_transformer_mtlora.py`` + ``models/swin_mtl.py``:

* ``linear``: one ``MTLoRALinear`` (shared_mode 'matrix', two tasks) with seeded weights, in eval mode without and
  with task inputs, and in train mode with LoRA dropout p = 1 (deterministic: the dropout zeroes its input, so the
  output shows which paths see the dropped input);
* ``model`` / ``plus``: a tiny ``SwinTransformerMTLoRA`` + ``MultiTaskSwin`` (embed 4, depths 2-2-2-2, heads
  1-1-2-2, window 4, 64x64 input, rank 4, task rank 2, two tasks, HRNet heads of width 4), every parameter and BN
  buffer set to seeded values rounded to float16, in eval mode: the per-stage task features and the decoder outputs
  (every fourth pixel). ``plus`` is MTLoRA+ (``DOWNSAMPLER_ENABLED``: LoRA on the PatchMerging reductions) with
  the weights of ``model`` and its own reduction LoRA;
* ``counts``: trainable parameters as ``main.py`` marks them (``mark_only_lora_as_trainable``; reductions frozen
  for MTLoRA+) for Swin-T at 448 with the four PASCAL tasks, r16/32/64 and MTLoRA+ r16.
"""

import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _official  # noqa: E402
import torch  # noqa: E402
from _packing import pack_state as state  # noqa: E402

args = _official.parse_args("scale-lab/MTLoRA", __doc__)
for mod, attr, value in (("ptflops", "get_model_complexity_info", None), ("termcolor", "colored", lambda s, *a, **k: s)):
    sys.modules.setdefault(mod, types.ModuleType(mod))  # seg_hrnet imports them for FLOP counts and log colours
    setattr(sys.modules[mod], attr, value)
from models import lora as official_lora  # noqa: E402
from models.swin_mtl import MultiTaskSwin  # noqa: E402
from models.swin_transformer_mtlora import SwinTransformerMTLoRA  # noqa: E402

TINY = dict(img_size=64, embed_dim=4, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2], window_size=4)
TASKS, NUM_OUT = ["semseg", "normals"], {"semseg": 5, "normals": 3}
PASCAL = {"semseg": 21, "human_parts": 7, "sal": 1, "normals": 3}


def mtlora_cfg(rank, task_rank, tasks, plus=False, dropout=0.05):
    """``config.py``'s derived MTLoRA node: per-layer rank / scale dicts (task scale = shared scale, as there)."""
    r = [{"shared": rank, **{t: task_rank for t in tasks}}] * 4
    s = [{t: 4.0 for t in tasks}] * 4
    return NS(ENABLED=True, R_PER_TASK_LIST=r, SCALE_PER_TASK_LIST=s, SHARED_SCALE=[4.0] * 4, DROPOUT=[dropout] * 4,
              TRAINABLE_SCALE_SHARED=False, TRAINABLE_SCALE_PER_TASK=False, INTERMEDIATE_SPECIALIZATION=False,
              SHARED_MODE="matrix", QKV_ENABLED=True, PROJ_ENABLED=True, FC1_ENABLED=True, FC2_ENABLED=True,
              DOWNSAMPLER_ENABLED=plus)


def build(rank, task_rank, tasks, num_out, plus=False, swin=TINY, channels=(4, 4, 4, 4)):
    m = mtlora_cfg(rank, task_rank, tasks, plus)
    backbone = SwinTransformerMTLoRA(num_classes=0, drop_path_rate=0.0, tasks=tasks, mtlora=m, **swin)
    cfg = NS(TASKS=tasks, TASKS_CONFIG=NS(ALL_TASKS=NS(NUM_OUTPUT=num_out)),
             MODEL=NS(DECODER_CHANNELS=list(channels), DECODER_DOWNSAMPLER=True, PER_TASK_DOWNSAMPLER=True,
                      MTLORA=m, DECODER_HEAD={}, SWIN=NS(WINDOW_SIZE=swin["window_size"])),
             DATA=NS(IMG_SIZE=swin["img_size"]))
    return MultiTaskSwin(backbone, cfg)


def count(model, plus):
    official_lora.mark_only_lora_as_trainable(model.backbone, bias="none", freeze_patch_embed=False,
                                              freeze_norm=False, free_relative_bias=False,
                                              freeze_downsample_reduction=plus)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if ("norm" in name or name.endswith(".1.weight")) and name.endswith("weight") and p.dim() == 1:
            v = 1.0 + 0.1 * r  # LayerNorm / BatchNorm scales
        elif p.dim() >= 2:
            v = r * 0.7 / p[0].numel() ** 0.5
        else:
            v = 0.1 * r
        p.copy_(v.half().float())
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_((0.1 * torch.randn(b.shape, generator=g)).half().float())
        elif name.endswith("running_var"):
            b.copy_((1.0 + 0.2 * torch.rand(b.shape, generator=g)).half().float())


@torch.no_grad()
def run(model, image):
    model.eval()
    stages = model.backbone(image, return_stages=True)
    feats = {t: [tl[t].clone() for _, tl in stages] for t in TASKS}
    return {"features": feats, "outputs": {t: o[..., ::4, ::4].clone() for t, o in model(image).items()}}


# --- one MTLoRALinear ------------------------------------------------------------------------------------------
g = torch.Generator().manual_seed(0)
lin_tasks = ["a", "b"]
lin = official_lora.MTLoRALinear(6, 5, r={"shared": 3, "a": 2, "b": 2}, lora_shared_scale=4.0,
                                 lora_task_scale={"a": 4.0, "b": 4.0}, lora_dropout=1.0, tasks=lin_tasks)
with torch.no_grad():
    for p in lin.parameters():
        p.copy_((0.5 * torch.randn(p.shape, generator=g)).half().float())
x = torch.randn(2, 7, 6, generator=g).half().float()
xt = {t: torch.randn(2, 7, 6, generator=g).half().float() for t in lin_tasks}
lin_state = {k: v.clone() for k, v in lin.state_dict().items()}
with torch.no_grad():
    lin.eval()
    y, y_t = lin(x)
    y2, y2_t = lin(x, xt)
    lin.train()  # dropout p = 1: the dropped input is zero
    y3, y3_t = lin(x)
    y4, y4_t = lin(x, xt)
linear = {"state": lin_state, "tasks": lin_tasks, "rank": 3, "task_rank": 2, "scale": 4.0, "x": x, "x_tasks": xt,
          "eval": {"shared": y, "tasks": y_t}, "eval_task_inputs": {"shared": y2, "tasks": y2_t},
          "train_p1": {"shared": y3, "tasks": y3_t}, "train_p1_task_inputs": {"shared": y4, "tasks": y4_t}}

# --- tiny MTLoRA / MTLoRA+ -------------------------------------------------------------------------------------
torch.manual_seed(0)
image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)).half().float()
cases = {}
model = build(4, 2, TASKS, NUM_OUT)
randomise(model, seed=2)
cases["model"] = {"state": state(model), **run(model, image)}
shared = model.state_dict()
model = build(4, 2, TASKS, NUM_OUT, plus=True)
randomise(model, seed=3)  # only the reductions' LoRA keeps these values: the rest is the model case's
shared = {k.replace("reduction.weight", "reduction.linear.weight"): v for k, v in shared.items()}
missing, unexpected = model.load_state_dict(shared, strict=False)
assert not unexpected and all("reduction.lora_shared" in k for k in missing), (missing, unexpected)
cases["plus"] = {"reduction_lora": state(model, keep=lambda k: "reduction.lora_shared" in k), **run(model, image)}

counts = {}
for rank, plus in ((16, False), (32, False), (64, False), (16, True)):
    m = build(rank, 4, list(PASCAL), PASCAL, plus=plus,
              swin=dict(img_size=448, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
              channels=(18, 36, 72, 144))
    counts[f"{'plus' if plus else 'mtlora'}_r{rank}"] = count(m, plus)
print(counts)

_official.save(Path(__file__).with_name("mtlora.pt"), args,
               {"linear": linear, "image": image.half(), "tasks": TASKS, "num_outputs": NUM_OUT, "swin": TINY,
                "rank": 4, "task_rank": 2, "cases": cases, "counts": counts})
