"""TADFormer against the official code (``tests/data/golden/tadformer``, Min100KM/TADFormer@1f53b9f): per-stage
task features and decoder outputs of a tiny model with stored weights, in the three variants (paper's dynamic
filter, released static filter, and the cleaned forward), and the official trainable-parameter counts."""

import pytest
import torch

from vitlab.core import Swin
from vitlab.mtl import TADFormer
from vitlab.mtl.tadformer import official_parameter_count

from ._golden import check_forward, load, unpack

GOLD = load("tadformer")
DATA = GOLD["data"]



def build(variant: str) -> TADFormer:
    sw = DATA["swin"]
    swin = Swin(img_size=sw["img_size"], window_size=sw["window_size"], embed_dim=sw["embed_dim"],
                depths=sw["depths"], num_heads=sw["num_heads"], drop_path_rate=0.0)
    return TADFormer(swin, DATA["tasks"], rank=DATA["rank"], num_outputs=DATA["num_outputs"], head_widths=[4] * 4,
                     task_filter="static" if variant == "static" else "dynamic",
                     mode="clean" if variant == "clean" else "official")


@pytest.mark.parametrize("variant", ["dynamic", "static", "clean"])
def test_forward_equals_official(variant):
    model = build(variant).eval()
    state = unpack(DATA["cases"]["dynamic"]["state"])
    if variant == "static":
        state = {k: v for k, v in state.items() if "lora_filter" not in k} | unpack(DATA["cases"]["static"]["filters"])
    check_forward(model, state, DATA, DATA["cases"][variant], variant)


def test_modes_differ_on_these_weights():
    """The cleaned forward is a real switch: on the stored weights it moves the features by far more than the
    tolerance (the official run of each variant is the reference, so this guards the golden file itself)."""
    off, clean = DATA["cases"]["dynamic"]["features"], DATA["cases"]["clean"]["features"]
    assert max((a - b).abs().max().item() for t in off for a, b in zip(off[t], clean[t])) > 1e-2


@pytest.mark.parametrize("rank", [16, 32, 64])
def test_parameter_counts_official_and_vitlab(rank):
    with torch.device("meta"):
        model = TADFormer(Swin(img_size=448), ["semseg", "human_parts", "sal", "normals"], rank=rank)
    mine = sum(p.numel() for p in model.parameters() if p.requires_grad)
    official = DATA["counts"][f"dynamic_r{rank}"]
    assert official_parameter_count(model) == official
    assert official - mine == 5_952  # the dead prompt_layernorm of the 8 non-adapting Swin-T blocks
    assert mine == {16: 3_551_550, 32: 4_770_174, 64: 7_373_310}[rank]


def test_static_filter_count():
    with torch.device("meta"):
        model = TADFormer(Swin(img_size=448), ["semseg", "human_parts", "sal", "normals"], rank=64,
                          task_filter="static")
    assert official_parameter_count(model) == DATA["counts"]["static_r64"] == 6_946_878


def test_task_prompts_up_init_and_proj_dropout_on_task_path():
    torch.manual_seed(0)
    model = TADFormer(Swin(img_size=64, window_size=4, embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4),
                           drop_path_rate=0.0), ["semseg", "normals"], rank=4, dropout=1.0)
    w = torch.cat([up.weight.flatten() for up in model.backbone.task_prompts_up])
    assert abs(w.std().item() - 0.02) < 0.001  # official _init_weights: trunc_normal_(std=.02) on every Linear
    # proj's LoRA dropout (here p = 1: all zeros) also feeds the task path, so LN_p sees drop(z) + s_t = 0
    seen = []
    proj = model.backbone.swin.stage_blocks(0)[-1].attn.proj
    forward_task = proj.forward_task
    proj.forward_task = lambda x, xt, t, base=None: seen.append(xt) or forward_task(x, xt, t, base)
    model.train()
    model.encode(torch.randn(1, 3, 64, 64))
    norm = model.backbone.tpc_norms[0]
    assert seen and all(torch.allclose(xt, norm.bias.expand_as(xt)) for xt in seen)
