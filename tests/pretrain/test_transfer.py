"""A pre-training checkpoint loads into core's downstream modules with one config key."""

from __future__ import annotations

from pathlib import Path

import torch

from vitlab.core import DepthEstimation, ImageClassification, SemanticSegmentation, ViT
from vitlab.core.cli import build_cli

REPO = Path(__file__).resolve().parents[2]
ENC = dict(embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=64)


def _pretrain(tmp_path: Path, config: str, *extra: str):
    args = ["fit", "--config", str(REPO / "configs" / "pretrain" / config),
            "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
            "--trainer.num_sanity_val_steps", "0", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.callbacks", "lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.dirpath", str(tmp_path / "ckpt"), "--trainer.callbacks.save_last", "true",
            "--data.init_args.size", "64", "--data.init_args.batch_size", "4", "--data.init_args.train_samples", "8",
            "--data.init_args.val_samples", "4", *extra]
    for k, v in ENC.items():
        args += [f"--model.init_args.encoder.init_args.{k}", str(v)]
    cli = build_cli(args)
    return cli.model.encoder, tmp_path / "ckpt" / "last.ckpt"


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in sa.items():
        if k in skip:
            continue
        assert torch.equal(v, sb[k]), k


def test_mae_checkpoint_loads_into_downstream_tasks(tmp_path):
    encoder, ckpt = _pretrain(tmp_path, "quickstart.yaml", "--model.init_args.decoder_embed_dim", "16",
                              "--model.init_args.decoder_depth", "1", "--model.init_args.decoder_num_heads", "2")
    assert ckpt.is_file()
    vit = ViT(**ENC, pretrained=str(ckpt))
    _same(encoder, vit)
    assert not torch.equal(vit.blocks[0].attn.qkv.weight, ViT(**ENC).blocks[0].attn.qkv.weight)
    for task in (ImageClassification(ViT(**ENC, pretrained=str(ckpt)), num_classes=5, freeze_backbone=True),
                 SemanticSegmentation(ViT(**ENC, pretrained=str(ckpt)), num_classes=7, head="linear"),
                 DepthEstimation(ViT(**ENC, pretrained=str(ckpt)))):
        _same(encoder, task.backbone)
    # the one config key through the CLI (core's linear-probe recipe)
    args = ["--config", str(REPO / "configs" / "core" / "linear_probe.yaml"), "--trainer.logger", "false",
            "--trainer.accelerator", "cpu", "--model.init_args.backbone.init_args.pretrained", str(ckpt),
            "--data.init_args.size", "64"]
    for k, v in ENC.items():
        args += [f"--model.init_args.backbone.init_args.{k}", str(v)]
    cli = build_cli(args, run=False)
    _same(encoder, cli.model.backbone)


def test_sgmim_checkpoint_transfers_only_the_image_encoder(tmp_path):
    encoder, ckpt = _pretrain(tmp_path, "sgmim.yaml", "--model.init_args.masking.init_args.mask_patch_size", "16",
                              "--model.init_args.depth_embed_dim", "8")
    vit = ViT(**ENC, mask_token=True, layer_scale_init=0.1, pretrained=str(ckpt))
    _same(encoder, vit)
