"""Tiny model factories shared by the pretrain tests."""

from __future__ import annotations

import pytest
import torch

from vitlab.core import ViT


def _vit(**kw):
    args = dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32)
    args.update(kw)
    return ViT(**args)


@pytest.fixture
def tiny_vit():
    """Factory for a 32-d, 2-block ViT/8 at 32 px (extra kwargs override)."""
    return _vit


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine two spinning threads
    per process are several times slower than one; restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
