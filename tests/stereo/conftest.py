"""Tiny stereo networks shared by the stereo tests (2 CPU cores)."""

from __future__ import annotations

import pytest

from vitlab.stereo import BinocularViT

TINY = dict(enc_embed_dim=32, enc_depth=3, enc_num_heads=2, dec_embed_dim=32, dec_depth=2, dec_num_heads=2,
            img_size=(64, 64), layer_dims=(16, 16, 32, 32), feature_dim=16, last_dim=8)


@pytest.fixture
def tiny_net():
    def make(**kw):
        return BinocularViT(**{**TINY, **kw})
    return make
