"""Fixtures of the vitlab.peft tests: tiny ViTs and one instance of every tuner."""

from __future__ import annotations

import pytest
import torch

from vitlab.core import ViT
from vitlab.peft import VPT, Adapter, AdaptFormer, BitFit, FullFineTune, LinearProbe, LoRA, iConFormer

TUNERS = {
    "linear_probe": lambda: LinearProbe(),
    "full": lambda: FullFineTune(),
    "bitfit": lambda: BitFit(),
    "lora": lambda: LoRA(rank=4, targets=["qkv", "proj", "fc1", "fc2"]),
    "adapter": lambda: Adapter(bottleneck=8),
    "adaptformer": lambda: AdaptFormer(bottleneck=8),
    "vpt_shallow": lambda: VPT(num_prompts=3),
    "vpt_deep": lambda: VPT(num_prompts=3, deep=True),
    "iconformer": lambda: iConFormer(bottleneck=8),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine spinning threads triple the time."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def make_vit():
    """``make_vit(**overrides)``: a 4-block, 48-wide ViT for 32-64 px inputs, seeded."""

    def make(seed: int = 0, **kw) -> ViT:
        torch.manual_seed(seed)
        args = dict(embed_dim=48, depth=4, num_heads=3, patch_size=8, img_size=32)
        args.update(kw)
        return ViT(**args)

    return make


@pytest.fixture
def tuners():
    return TUNERS
