"""``compile: true`` compiles what runs: dynamo frames from the hot path and zero graph breaks.

Compilation on 2 CPU cores is slow, so the fits use dynamo + AOTAutograd with the ``aot_eager`` backend
(what is asserted — frames captured, graph breaks — is decided before the backend generates code; the GPU
benchmark runs inductor). Models are tiny.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch._dynamo
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from timm.models.vision_transformer import Block
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader, Dataset

from vitlab.core import CrossBlock, DepthEstimation, DPTHead, SemanticSegmentation, ViT
from vitlab.core.perf import compile_regions, dynamo_counts

AOT = {"backend": "aot_eager"}


def _vit(**kw):
    return ViT(**{**dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32), **kw})


def _stereo_net(**kw):
    from vitlab.stereo import BinocularViT

    return BinocularViT(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=2,
                        dec_num_heads=2, img_size=(32, 64), layer_dims=(16, 16, 32, 32), feature_dim=16,
                        last_dim=8, **kw)


def _regions(module):
    return [m for m in module.modules() if isinstance(m, (Block, CrossBlock, DPTHead))]


def test_compile_flag_compiles_every_block_and_head_in_place():
    """No mocks: after ``configure_model`` every block/head of the module carries a compiled call, the
    state-dict keys keep their names, and nothing is compiled twice or without the flag."""
    from vitlab.pretrain import MAE
    from vitlab.stereo import MaDisStereo

    modules = {
        "dense": SemanticSegmentation(backbone=_vit(), num_classes=3, head="dpt",
                                      head_kwargs={"feature_dim": 16}, compile=True),
        "mae": MAE(_vit(), decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2, compile=True),
        "madis": MaDisStereo(_stereo_net(hook_mode="decoder"), compile=True),
    }
    for name, m in modules.items():
        keys = set(m.state_dict())
        assert all(r._compiled_call_impl is None for r in _regions(m))
        m.configure_model()
        m.configure_model()  # idempotent
        regions = _regions(m)
        assert regions and all(r._compiled_call_impl is not None for r in regions), name
        assert set(m.state_dict()) == keys, f"{name}: compile changed state-dict keys"
        # only the regions: their children (attention, MLP) are inlined, not compiled again
        for r in regions:
            assert all(c._compiled_call_impl is None for c in r.modules() if c is not r)
    assert len(modules["mae"].compiled_regions) == 2 + 2  # encoder blocks + decoder blocks
    assert any(n.startswith("teacher.") for n in modules["madis"].compiled_regions), "EMA teacher runs compiled"
    plain = SemanticSegmentation(backbone=_vit(), num_classes=3, head="linear")
    plain.configure_model()
    assert all(r._compiled_call_impl is None for r in _regions(plain))


def test_compile_regions_skips_descendants_of_a_region():
    blk = Block(32, 2)
    assert compile_regions(blk) == [""]
    assert blk.attn._compiled_call_impl is None


@pytest.mark.slow
@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_whole_vit_compiles_without_graph_breaks_at_any_grid(pos_embed):
    """Position caches are bypassed while tracing: the whole encoder is one graph per shape, also for
    new grids (RoPE positions and sin-cos tables are computed in the graph)."""
    torch._dynamo.reset()
    counters.clear()
    vit = _vit(pos_embed=pos_embed)
    fn = torch.compile(vit.forward_features, fullgraph=True, **AOT)
    for hw in [(32, 32), (32, 64)]:
        x = torch.randn(2, 3, *hw)
        out = fn(x)
        torch.testing.assert_close(out, vit.forward_features(x), rtol=1e-4, atol=1e-4)
        out.sum().backward()
    c = dynamo_counts()
    assert c["graph_breaks"] == 0, dict(counters["graph_break"])
    assert c["frames"] >= 2  # one per grid


class _Random(Dataset):
    def __init__(self, make) -> None:
        self.make = make

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        return self.make(torch.Generator().manual_seed(i))


class _DM(LightningDataModule):
    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def train_dataloader(self):
        return DataLoader(_Random(self.make), batch_size=2, drop_last=True)


def _mae():
    from vitlab.pretrain import MAE

    return MAE(_vit(), decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, compile=True,
               compile_options=AOT), lambda g: {"image": torch.randn(3, 32, 32, generator=g)}


def _depth():
    return DepthEstimation(_vit(), head="dpt", head_kwargs={"feature_dim": 16}, compile=True,
                           compile_options=AOT), \
        lambda g: {"image": torch.randn(3, 32, 32, generator=g),
                   "depth": torch.rand(1, 32, 32, generator=g) * 5 + 0.5}


def _stereo(**net):
    from vitlab.stereo import StereoMatching

    return StereoMatching(_stereo_net(**net), compile=True, compile_options=AOT), \
        lambda g: {"image": torch.randn(3, 32, 64, generator=g), "right": torch.randn(3, 32, 64, generator=g),
                   "disparity": torch.rand(1, 32, 64, generator=g) * 8}


@pytest.mark.slow
@pytest.mark.parametrize("build", [_mae, _depth, _stereo, functools.partial(_stereo, corr_disparities=16)],
                         ids=["mae", "depth", "stereo_rope", "stereo_corr"])
def test_compiled_fit_runs_compiled_blocks_without_graph_breaks(build, tmp_path):
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    module, make = build()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=0, logger=CSVLogger(tmp_path),
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=_DM(make))
    assert trainer.global_step == 2
    c = dynamo_counts()
    assert c["frames"] > 0, "compile: true produced no dynamo frame on the training path"
    assert c["graph_breaks"] == 0, dict(counters["graph_break"])
    assert counters["stats"]["calls_captured"] > 0
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_regression_outputs_stay_fp32_under_bf16_autocast():
    """Disparity and depth leave their heads in fp32 under bf16 autocast (bf16 would round a disparity of
    100 px to 0.5 px steps); the segmentation head keeps bf16."""
    net = _stereo_net()
    depth = DepthEstimation(_vit(), head="dpt", head_kwargs={"feature_dim": 16})
    seg = SemanticSegmentation(_vit(), num_classes=3, head="dpt", head_kwargs={"feature_dim": 16})
    x = torch.randn(1, 3, 32, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        disp = net(x, x)
        d = depth(x[..., :32])
        s = seg(x[..., :32])
        loss = depth.loss(d, {"depth": torch.full((1, 1, 32, 32), 2.0)})
    assert disp.dtype == d.dtype == loss.dtype == torch.float32
    assert s.dtype == torch.bfloat16


@pytest.mark.parametrize("method", ["mae", "simmim", "noise"])
def test_mim_encoders_honour_gradient_checkpointing(method):
    """With ``grad_checkpointing`` the encoder blocks keep (far) fewer activations for backward, and the
    gradients are the same."""
    from vitlab.pretrain import MAE, NoiseMIM, SimMIM
    from vitlab.pretrain.masking import BlockRandomMask

    def build(ckpt: bool):
        torch.manual_seed(0)
        enc = _vit(depth=4, mask_token=method != "mae", grad_checkpointing=ckpt)
        if method == "mae":
            return MAE(enc, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
        if method == "simmim":
            return SimMIM(enc, masking=BlockRandomMask(16, 0.6))
        return NoiseMIM(enc)

    def run(ckpt: bool):
        m = build(ckpt)
        saved = []
        torch.manual_seed(1)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            losses, _, _ = m({"image": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))})
        losses["loss"].backward()
        return sum(saved), [p.grad.clone() for p in m.encoder.parameters() if p.grad is not None]

    plain_saved, plain_grads = run(False)
    ckpt_saved, ckpt_grads = run(True)
    assert ckpt_saved < 0.7 * plain_saved
    assert len(plain_grads) == len(ckpt_grads)
    for a, b in zip(plain_grads, ckpt_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stochastic_depth_rates_do_not_multiply_graphs():
    """A 12-block ViT with a linear drop-path schedule compiles two block graphs (the first block has no drop
    path), not one per rate, which would pass dynamo's recompile limit (8) and leave the last blocks eager.
    Eager numerics and state-dict keys are timm's."""
    from timm.layers import DropPath

    from vitlab.core.perf import TensorRateDropPath

    torch._dynamo.reset()
    counters.clear()
    vit = _vit(depth=12, drop_path_rate=0.1)
    keys = set(vit.state_dict())
    x = torch.randn(2, 3, 32, 32)
    reference = vit.eval().forward_features(x)
    vit.train()
    compile_regions(vit, backend="eager")
    paths = [m for m in vit.modules() if isinstance(m, DropPath)]
    assert paths and all(type(m) is TensorRateDropPath for m in paths)
    assert set(vit.state_dict()) == keys, "the rate buffers must not be persistent"
    rates = [m.drop_prob for m in paths]
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.1)
    torch.manual_seed(1)
    eager = paths[-1](x)  # eager: timm's code path and random numbers
    torch.manual_seed(1)
    assert torch.equal(eager, DropPath(rates[-1])(x))
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for _ in range(2):
            vit.forward_features(x).sum().backward()
    c = dynamo_counts()
    assert c["frames"] == 2 and c["graph_breaks"] == 0, dict(counters["graph_break"])
    torch.testing.assert_close(vit.eval().forward_features(x), reference, rtol=1e-4, atol=1e-4)


def test_each_region_class_has_its_own_recompile_limit():
    """``nn.Module.compile`` shares one code object (``Module._call_impl``) between all modules, so all regions
    of a process would share dynamo's eight graphs; compile_regions gives every class its own."""
    torch._dynamo.reset()
    counters.clear()
    mods = [type(f"Region{i}", (torch.nn.Linear,), {"compile_region": True})(4, 4 + i) for i in range(10)]
    for m in mods:
        compile_regions(m, backend="eager")
    x = torch.randn(2, 4)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for m in mods:
            m(x)
    assert dynamo_counts()["frames"] == 10


def test_swin_stage_outputs_run_the_compiled_encoder():
    """Swin's blocks run through ``block_forward``, not as module calls: the encoder is the region, and
    ``forward_stages`` / ``forward_intermediates`` go through it."""
    from vitlab.core.backbones import Swin
    from vitlab.core.perf import compiled_parameter_share

    torch._dynamo.reset()
    counters.clear()
    swin = Swin(img_size=64, window_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                drop_path_rate=0.0)
    x = torch.randn(1, 3, 64, 64)
    ref = swin.forward_stages(x)
    assert compile_regions(swin, backend="eager") == [""]
    assert compiled_parameter_share(swin) == 1.0
    for a, b in zip(swin.forward_stages(x), ref):
        torch.testing.assert_close(a, b)
    assert len(swin.forward_intermediates(x)) == 4
    c = dynamo_counts()
    assert c["frames"] == 1 and c["graph_breaks"] == 0, dict(counters["graph_break"])
