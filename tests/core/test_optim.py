import math

import pytest
import torch
from torch import nn

from vitlab.core.optim import param_groups, warmup_cosine


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.embed = nn.Linear(4, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def no_weight_decay(self):
        return {"cls_token"}


def layer_id(name: str) -> int:
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith(("embed", "cls_token")):
        return 0
    return 3


def test_no_weight_decay_on_1d_bias_and_tokens():
    groups = param_groups(Toy(), lr=1.0, weight_decay=0.05)
    names = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert names["embed.weight"] == 0.05 and names["blocks.1.weight"] == 0.05
    assert names["embed.bias"] == 0.0 and names["norm.weight"] == 0.0 and names["cls_token"] == 0.0
    assert not any(n.startswith("frozen") for n in names), "frozen parameters must not reach the optimizer"


def test_layer_decay_scales():
    groups = param_groups(Toy(), lr=1.0, weight_decay=0.0, layer_decay=0.5, layer_id=layer_id, num_layers=2)
    lr = {n: g["lr"] for g in groups for n in g["names"]}
    assert lr["embed.weight"] == pytest.approx(0.5**3)
    assert lr["blocks.0.weight"] == pytest.approx(0.5**2)
    assert lr["blocks.1.weight"] == pytest.approx(0.5)
    assert lr["norm.weight"] == pytest.approx(1.0)


def test_layer_decay_requires_ids():
    with pytest.raises(ValueError, match="layer_id"):
        param_groups(Toy(), lr=1.0, weight_decay=0.0, layer_decay=0.5)


def test_warmup_cosine_values():
    f = warmup_cosine(total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    assert f(0) == 0.0 and f(1) == pytest.approx(0.5)
    assert f(2) == pytest.approx(1.0)
    # halfway through the cosine (step 6 of the 8 cosine steps starting at 2): mid value
    assert f(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(10) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    values = [f(s) for s in range(2, 11)]
    assert all(a >= b for a, b in zip(values, values[1:])), "cosine part must not increase"


def test_scheduler_drives_each_group_lr():
    model = Toy()
    opt = torch.optim.SGD(param_groups(model, lr=0.4, weight_decay=0.0, layer_decay=0.5, layer_id=layer_id,
                                       num_layers=2), lr=123.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(4, 0, 0.0))
    base = [g["lr"] for g in opt.param_groups]
    assert 123.0 not in base
    opt.step()
    sched.step()
    now = [g["lr"] for g in opt.param_groups]
    assert now == pytest.approx([b * 0.5 * (1 + math.cos(math.pi / 4)) for b in base])


def test_decay_tokens_option():
    groups = param_groups(Toy(), lr=1.0, weight_decay=0.05, decay_tokens=True)
    names = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert names["cls_token"] == 0.05 and names["embed.bias"] == 0.0
