"""SCA-MTL: GCA against the explicit formula, shapes at every scale, deep supervision, gradients everywhere."""

import pytest
import torch

from vitlab.mtl.sca import GCA, SCAMTL

from .conftest import fake_batch


def test_gca_matches_explicit_linear_attention():
    torch.manual_seed(0)
    g = GCA(4).eval()
    tgt, src = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 2, 2)
    out = g(tgt, src)
    q = torch.nn.functional.softplus(g.query(tgt)).flatten(2)[0]  # (d, 9)
    k = torch.nn.functional.softplus(g.key(src)).flatten(2)[0]  # (d, 4)
    v = g.value(src).flatten(2)[0]  # (m, 4)
    expect = torch.zeros(4, 9)
    for i in range(9):
        w = torch.stack([k[:, j] @ q[:, i] for j in range(4)])
        expect[:, i] = (v * w).sum(1) / w.sum()
    torch.testing.assert_close(out[0].flatten(1), expect, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # HRNet + attention at every scale: about a minute on a busy 2-core CPU
def test_sca_shapes_deep_supervision_and_gradients():
    torch.manual_seed(0)
    tasks = ["semseg", "sal", "depth"]
    m = SCAMTL(tasks, img_size=64).train()
    batch = fake_batch(64, 2)
    out, aux = m.forward_with_aux(batch["image"])
    assert out["semseg"].shape == (2, 21, 64, 64) and out["depth"].shape == (2, 1, 64, 64)
    assert [tuple(a.shape[-2:]) for a in aux["sal"]] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert m.decoders["semseg"].in_channels == 540
    m.log = lambda *a, **k: None
    m.log_dict = lambda *a, **k: None
    loss = m.training_step(batch, 0)
    plain, _ = m.criterion(out, batch)
    assert loss > plain  # auxiliary terms added
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_se_ratio_and_backbone_bn_momentum_follow_the_official_code():
    """FPMA's SE is the official ``SEBlock(r=16)``: C // 16 hidden channels (1, 2, 4, 9 for W18), mean-pool,
    ReLU, sigmoid gate; the HRNet backbone's BatchNorms use the official ``BN_MOMENTUM`` 0.01."""
    with torch.device("meta"):
        m = SCAMTL(["semseg", "sal"], img_size=64)
    enc = m.backbone if hasattr(m, "backbone") else m.encoder
    hidden = {s: se["semseg"].fc1.out_channels for s, se in enc.fpma_se.items()}
    widths = dict(zip(map(str, range(4)), enc.hrnet.out_channels))
    assert hidden == {s: max(1, widths[s] // 16) for s in hidden}
    bns = [b for b in enc.hrnet.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.01 for b in bns)
    se = enc.fpma_se["3"]["semseg"].to_empty(device="cpu")
    for p in se.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, widths["3"], 3, 3)
    squeeze = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(se(x), x * squeeze)
