"""SCA-MTL's attention blocks against the official code (``tests/data/golden/sca``, kimsunkyung/SCA_MTL@8214866):
GCA, CTAM (cross-task attention + shared reduction, at HRNet-W18's first scale), the CSAM head and the FPM
squeeze-excitation, each with the official weights mapped by name onto vitlab's modules.

The blocks are equal up to the order in which they concatenate their branches, so the mapping permutes the input
channels of the layer that reads the concatenation:

* CTAM: for target t the official ``MultiTaskDistillationModule`` prepends each new ``[G_t, GCA_{t,a}]`` pair
  (``cat([adapters[a], concat_ad])``), so the pairs come in reverse source order; vitlab appends them. The shared
  reduction's ``conv1`` and shortcut conv take the 2C-wide pair blocks reversed.
* CSAM: the official ``HighResolutionHead`` concatenates ``[x0 (1→0), x00 (2→0), x000 (3→0), x1 (2→1), x11 (3→1),
  x2 (3→2), F3]``; vitlab walks each target scale from the coarsest source, ``[3→0, 2→0, 1→0, 3→1, 2→1, 3→2, F3]``.
  The classifier's first conv takes its input channels in that order.

The released head hard-codes a 1080-channel classifier; the golden run rebuilt it at the width of its inputs (see
the regeneration script), as vitlab's ``CSAMHead`` does. Tolerance 1e-5 relative to each output's scale (float32
on both sides with identical float16-rounded weights, only the summation order differs).
"""

import re

import pytest
import torch
from torch import nn

from vitlab.mtl.sca import GCA, CSAMHead, SCAEncoder

from ._golden import load, unpack

GOLD = load("sca")
DATA = GOLD["data"]


def assert_close(mine, ref, msg):
    err, scale = (mine - ref).abs().max().item(), ref.abs().max().item()
    assert err <= 1e-5 * (scale + 1), f"{msg}: max abs diff {err:.3g} at scale {scale:.3g}"


def gca_name(k: str) -> str:
    """Official ``GlobalContextAttentionBlock`` (ConvBNReLU ``conv``/``bn``) → vitlab ``GCA`` (Sequentials)."""
    k = re.sub(r"^(query|key)_project\.(\d)\.conv\.", r"\1.\2.0.", k)
    k = re.sub(r"^(query|key)_project\.(\d)\.bn\.", r"\1.\2.1.", k)
    return k.replace("value_project.conv.", "value.0.").replace("value_project.bn.", "value.1.")


def load_exact(module: nn.Module, state: dict) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("num_batches_tracked") for k in missing), missing


def blocks(widths: list[int], order: list[int]) -> torch.Tensor:
    """Channel indices of the concatenated blocks ``widths`` taken in ``order``."""
    starts = [sum(widths[:i]) for i in range(len(widths))]
    return torch.cat([torch.arange(starts[i], starts[i] + widths[i]) for i in order])


def test_gca_equals_official():
    d = DATA["gca"]
    m = GCA(d["target"].shape[1]).eval()
    load_exact(m, {gca_name(k): v for k, v in unpack(d["state"]).items()})
    with torch.no_grad():
        assert_close(m(d["target"], d["source"]), d["out"], "GCA")


class _Const(nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, *_):
        return self.value


class _Features(nn.Module):
    def __init__(self, feats: list[torch.Tensor]) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, _):
        return list(self.feats)


@pytest.fixture(scope="module")
def encoder() -> SCAEncoder:
    """vitlab's SCA encoder at a 24-pixel input (first scale 6x6, as the stored CTAM inputs)."""
    tasks = DATA["ctam"]["tasks"]
    torch.manual_seed(0)
    return SCAEncoder(tasks, {t: 1 for t in tasks}, img_size=24, drop_path=0.0).eval()


def test_ctam_equals_official(encoder):
    """CTAM runs inside ``SCAEncoder.forward``: the backbone, self-attention and ITP are replaced by constants so
    that ITP_0 returns the stored G_t^0 (the coarser scales see zeros), and the scale-0 output is Ĝ_t^0."""
    d = DATA["ctam"]
    tasks, C, T = d["tasks"], encoder.widths, len(d["tasks"])
    state = {}
    for k, v in unpack(d["state"]).items():
        m = re.match(r"^cross_attention\.(\w+)\.(\w+)\.(.*)$", k)
        if m:
            state[f"ctam.0.{m[1]}__{m[2]}.{gca_name(m[3])}"] = v
            continue
        k = k.replace("dimensionality_reduction.", "ctam_reduce.0.")
        if k in ("ctam_reduce.0.conv1.weight", "ctam_reduce.0.downsample.0.weight"):
            v = v[:, blocks([2 * C[0]] * (T - 1), list(range(T - 2, -1, -1)))]  # pairs in reverse source order
        state[k] = v
    assert len(state) == len([k for k in encoder.state_dict() if re.match(r"^ctam(_reduce)?\.0\.", k)
                              and not k.endswith("num_batches_tracked")])
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    assert not unexpected
    b, h, w = next(iter(d["features"].values())).shape[0], *next(iter(d["features"].values())).shape[-2:]
    sizes = [(h, w)] + [tuple(r) for r in ((3, 3), (2, 2), (1, 1))]
    orig = (encoder.hrnet, encoder.self_attn, encoder.itp)
    try:
        encoder.hrnet = _Features([torch.zeros(b, c, *s) for c, s in zip(C, sizes)])
        encoder.self_attn = nn.ModuleList(nn.Identity() for _ in C)
        encoder.itp = nn.ModuleList(
            nn.ModuleDict({t: _Const(d["features"][t] if s == 0 else torch.zeros(b, C[s], *sizes[s])) for t in tasks})
            for s in range(4))
        with torch.no_grad():
            out, _ = encoder(torch.zeros(b, 3, 24, 24))
    finally:
        encoder.hrnet, encoder.self_attn, encoder.itp = orig
    for t in tasks:
        assert_close(out[t][0], d["out"][t], f"CTAM target {t}")


def test_csam_equals_official():
    d = DATA["csam"]
    C = d["widths"]
    head = CSAMHead(C, d["out_channels"]).eval()
    assert head.in_channels == 6 * C[0] + 4 * C[1] + 2 * C[2] + C[3]
    # official concat [(1→0), (2→0), (3→0), (2→1), (3→1), (3→2), F3] → vitlab [(3→0), (2→0), (1→0), (3→1), (2→1),
    # (3→2), F3]
    perm = blocks([2 * C[0]] * 3 + [2 * C[1]] * 2 + [2 * C[2], C[3]], [2, 1, 0, 4, 3, 5, 6])
    state = {}
    for k, v in unpack(d["state"]).items():
        m = re.match(r"^cross_scale_attention(\d)\.(.*)$", k)
        if m:
            k = f"gca.{m[1]}.{gca_name(m[2])}"
        elif m := re.match(r"^upsample(\d\d)\.(.*)$", k):
            k = f"proj.{m[1]}.{m[2]}"
        elif m := re.match(r"^last_layer\.([013])\.(.*)$", k):
            k = f"classifier.{m[1]}.{m[2]}"
            if k == "classifier.0.weight":
                v = v[:, perm]
        state[k] = v
    load_exact(head, state)
    feats = d["features"]
    with torch.no_grad():
        out = head(feats, feats[0].shape[-2:])  # official returns the 1/4 map: no final upsampling
    assert_close(out, d["out"], "CSAM head")


@pytest.mark.parametrize("scale", [1, 3])
def test_fpm_se_equals_official(encoder, scale):
    """FPMA's per-task SE (timm ``SEModule``, 1×1 convs) with the official ``SEBlock(r=16)`` (Linear) weights."""
    C = encoder.widths[scale]
    d = DATA["se"][C]
    se = encoder.fpma_se[str(scale)][encoder.tasks[0]]
    names = {"squeeze.0": "fc1", "squeeze.2": "fc2"}
    state = {}
    for k, v in unpack(d["state"]).items():
        mod, p = k.rsplit(".", 1)
        state[f"{names[mod]}.{p}"] = v.view(*v.shape, 1, 1) if p == "weight" else v
    load_exact(se, state)
    with torch.no_grad():
        assert_close(se(d["x"]), d["out"], f"SE at {C} channels")
