"""CroCo cross-view completion pre-training: mask law, shapes, loss on masked patches only, learning, the use of
view 2, and the transfer of encoder + decoder into the stereo network with one config key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vitlab.core import CroCoNet, ViT
from vitlab.core.backbones.patches import masked_mse, norm_pix_target, patchify
from vitlab.core.cli import build_cli
from vitlab.pretrain import CroCo, RandomPatchMask

REPO = Path(__file__).resolve().parents[2]
NET = dict(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=2, dec_num_heads=2,
           patch_size=8, img_size=32)


def _croco(**kw) -> CroCo:
    return CroCo(CroCoNet(**NET), **kw)


def _batch(b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Smooth random images (upsampled 8x8 noise); view 2 = view 1 shifted by 2 px (a stereo-like pair)."""
    g = torch.Generator().manual_seed(seed)
    left = F.interpolate(torch.randn(b, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    return {"image": left, "right": left.roll(2, dims=-1)}


def test_mask_law_shapes_and_counts():
    """CroCo's RandomMask masks int(0.9 N) patches (MAE's rule would keep int(0.1 N)): 16 patches -> 14 masked."""
    model = _croco()
    torch.manual_seed(0)
    losses, out, masks = model(_batch(3))
    assert out["pred"].shape == (3, 16, 8 * 8 * 3)
    assert masks.mask.shape == (3, 16) and torch.equal(masks.mask.sum(1), torch.full((3,), 14.0))
    assert masks.ids_keep.shape == (3, 2) and not torch.equal(masks.mask[0], masks.mask[1])  # per-sample
    assert RandomPatchMask(0.9)(1, (4, 4), "cpu").mask.sum() == 15  # the MAE count rule differs
    assert set(losses) == {"loss", "loss_mim"} and losses["loss"].ndim == 0


def test_loss_is_norm_pix_mse_on_masked_patches_only():
    model = _croco()
    batch = _batch()
    torch.manual_seed(1)
    losses, out, masks = model(batch)
    target = norm_pix_target(patchify(batch["image"], 8))
    ref = (((out["pred"] - target) ** 2).mean(-1) * masks.mask).sum() / masks.mask.sum()
    assert torch.allclose(losses["loss"], ref, atol=1e-6)
    pred = out["pred"].detach().requires_grad_()
    masked_mse(pred, target, masks.mask).backward()
    visible = masks.mask < 0.5
    assert torch.all(pred.grad[visible] == 0) and torch.all(pred.grad[~visible].abs().sum(-1) > 0)


def test_masked_view1_pixels_are_not_seen_but_view2_is():
    """View-2 ablation: the decoder completes view 1 from view 2 (replacing view 2 changes the prediction),
    while the masked pixels of view 1 never reach the network."""
    model = _croco().eval()
    batch = _batch()
    torch.manual_seed(2)
    masks = model.make_mask(batch, batch["image"])

    def predict(b):
        with torch.no_grad():
            return model.decode(model.encode(b["image"], masks, b), masks, b)["pred"]

    base = predict(batch)
    hidden = masks.pixel_mask(8).bool().expand_as(batch["image"])
    scrambled = {**batch, "image": torch.where(hidden, torch.randn_like(batch["image"]), batch["image"])}
    assert torch.allclose(predict(scrambled), base, atol=1e-6)
    for right in (torch.zeros_like(batch["right"]), batch["right"].flip(0)):
        changed = predict({**batch, "right": right})
        m = masks.mask > 0.5
        assert (changed - base)[m].abs().mean() > 1e-3 * base[m].abs().mean()


def test_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    model = _croco()
    batch = _batch(4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        torch.manual_seed(0)  # one fixed mask
        loss = model(batch)[0]["loss"]
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.65 * losses[0], losses[::5]


def test_bad_batches_name_the_views():
    model = _croco()
    with pytest.raises(KeyError, match="right"):
        model({"image": torch.randn(1, 3, 32, 32)})
    with pytest.raises(ValueError, match="differ"):
        model({"image": torch.randn(1, 3, 32, 32), "right": torch.randn(1, 3, 32, 64)})


def _cli(config: str, tmp: Path, *extra: str, run: bool = True):
    """The shipped config with its W&B logger (offline, see the tests) and its callbacks; only sizes, steps and
    the output folder change."""
    args = ["fit"] * run + ["--config", str(REPO / "configs" / config), "--trainer.accelerator", "cpu",
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.default_root_dir", str(tmp), *extra]
    return build_cli(args, run=run)


def _last(cli) -> Path:
    path = Path(cli.trainer.checkpoint_callback.last_model_path)
    assert path.is_file(), f"no last.ckpt written: {path}"
    return path


SMALL = {"enc_embed_dim": 32, "enc_depth": 2, "enc_num_heads": 2, "dec_embed_dim": 32, "dec_depth": 2,
         "dec_num_heads": 2}


def test_croco_checkpoint_loads_into_binocular_vit_and_fine_tunes(tmp_path, monkeypatch):
    """CroCo pre-training through the CLI, then stereo fine-tuning through the CLI with the one key
    ``model.init_args.model.init_args.pretrained``: encoder and decoder tensors arrive unchanged."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = ["--data.init_args.size", "[32, 64]", "--data.init_args.batch_size", "2",
            "--data.init_args.train_samples", "4", "--data.init_args.val_samples", "2"]
    pre = _cli("pretrain/croco_quickstart.yaml", tmp_path / "pre", *data,
               *(a for k, v in SMALL.items() for a in (f"--model.init_args.net.init_args.{k}", str(v))))
    ckpt = _last(pre)
    assert list(Path(pre.trainer.default_root_dir).glob("wandb/offline-run-*")), "the W&B logger ran"
    stereo = _cli("stereo/quickstart.yaml", tmp_path / "st", *data,
                  "--model.init_args.model.init_args.pretrained", str(ckpt),
                  *(a for k, v in SMALL.items() for a in (f"--model.init_args.model.init_args.{k}", str(v))),
                  run=False)
    src, dst = pre.model.net.state_dict(), stereo.model.net.state_dict()
    # only the new parts are not in the pre-training checkpoint: the DPT head and the quickstart's correlation
    assert set(src) == {k for k in dst if not k.startswith(("head.", "corr."))}
    for k, v in src.items():
        assert torch.equal(v, dst[k]), k
    fresh = CroCoNet(**SMALL, patch_size=16).state_dict()
    assert not torch.equal(fresh["dec_blocks.0.cross_attn.qkv.weight"], dst["dec_blocks.0.cross_attn.qkv.weight"])
    stereo.trainer.fit(stereo.model, datamodule=stereo.datamodule)
    assert stereo.trainer.global_step == 2
    # the encoder alone loads into a plain ViT as well (MIM convention)
    vit = ViT(embed_dim=32, depth=2, num_heads=2, pos_embed="rope", class_token=False, pretrained=str(ckpt))
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, src["encoder.blocks.1.mlp.fc2.weight"])


def test_croco_trains_on_an_image_pair_folder(tmp_path, monkeypatch):
    """Any image-pair folder through the CLI: ``--data ImagePairDataModule --data.left/--data.right`` globs."""
    from PIL import Image

    monkeypatch.setenv("WANDB_MODE", "offline")
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        img = (torch.rand(24, 72, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(img[:, :-8]).save(tmp_path / f"{i}_L.png")
        Image.fromarray(img[:, 8:]).save(tmp_path / f"{i}_R.png")
    cli = _cli("pretrain/croco_quickstart.yaml", tmp_path / "run", "--data", "vitlab.core.data.ImagePairDataModule",
               "--data.left", str(tmp_path / "*_L.png"), "--data.right", str(tmp_path / "*_R.png"),
               "--data.size", "[32, 64]", "--data.batch_size", "2", "--data.num_workers", "0",
               *(a for k, v in SMALL.items() for a in (f"--model.init_args.net.init_args.{k}", str(v))))
    assert cli.trainer.global_step == 2 and _last(cli).is_file()
