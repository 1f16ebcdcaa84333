import pytest
import torch

from vitlab.core import Swin

PASCAL = ["semseg", "human_parts", "sal", "normals"]


def tiny_swin(img_size: int = 56, seed: int = 0) -> Swin:
    torch.manual_seed(seed)
    return Swin(img_size=img_size, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), drop_path_rate=0.0)


def fake_batch(size: int = 56, batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(batch, 3, size, size, generator=g)
    return {
        "image": torch.randn(batch, 3, size, size, generator=g),
        "semseg": torch.randint(0, 21, (batch, size, size), generator=g),
        "human_parts": torch.randint(0, 7, (batch, size, size), generator=g),
        "sal": (torch.rand(batch, 1, size, size, generator=g) > 0.5).float(),
        "normals": n / n.norm(dim=1, keepdim=True),
        "edge": (torch.rand(batch, 1, size, size, generator=g) > 0.9).float(),
        "depth": torch.rand(batch, 1, size, size, generator=g) * 5 + 0.5,
    }


@pytest.fixture
def swin():
    return tiny_swin()
