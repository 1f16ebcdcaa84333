"""MAE train-step time: ``vitlab.pretrain.MAE`` inside Lightning vs a plain PyTorch loop of the same recipe.

The reference is written here on timm ``Block`` s with no vitlab code: ViT encoder on the visible 25% of
tokens (fixed sin-cos positions), 512-d/8-block/16-head decoder, norm-pix MSE on masked patches, AdamW
(0.9, 0.95) with wd 0.05 on >= 2-D weights (fused, as vitlab's default optimizer), per-step LambdaLR. The two arms are interleaved step by step in
one process (a callback runs one plain step after every Lightning step), so machine load affects both alike;
reported: median step time of each arm and the median of the per-step ratios (warm-up steps excluded).

    python benchmarks/pretrain_mae_step.py --size base --img 224 --batch 4 --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn as nn
from lightning.pytorch import Callback, Trainer
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch.utils.data import DataLoader, Dataset

from vitlab.core import ViT
from vitlab.core.backbones import get_2d_sincos_pos_embed
from vitlab.core.backbones.vit import VIT_SIZES
from vitlab.pretrain import MAE


class RefMAE(nn.Module):
    """Plain MAE on timm blocks (independent of vitlab's modules)."""

    def __init__(self, dim, depth, heads, img=224, p=16, ddim=512, ddepth=8, dheads=16):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.p = p
        self.patch = PatchEmbed(img, p, 3, dim)
        g = self.patch.grid_size
        self.register_buffer("pos", get_2d_sincos_pos_embed(dim, g, 1)[None])
        self.register_buffer("dpos", get_2d_sincos_pos_embed(ddim, g, 1)[None])
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(depth))
        self.norm = norm(dim)
        self.dembed = nn.Linear(dim, ddim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, ddim))
        self.dblocks = nn.ModuleList(Block(ddim, dheads, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(ddepth))
        self.dnorm = norm(ddim)
        self.pred = nn.Linear(ddim, p * p * 3)

    def forward(self, img, ratio=0.75):
        x = self.patch(img) + self.pos[:, 1:]
        B, L, D = x.shape
        keep = int(L * (1 - ratio))
        ids_shuffle = torch.argsort(torch.rand(B, L, device=x.device), 1)
        ids_restore = torch.argsort(ids_shuffle, 1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, L, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        x = torch.cat([(self.cls + self.pos[:, :1]).expand(B, -1, -1), x], 1)
        for b in self.blocks:
            x = b(x)
        x = self.dembed(self.norm(x))
        d = x.shape[-1]
        y = torch.cat([x[:, 1:], self.mask_token.expand(B, L - keep, d)], 1)
        y = torch.gather(y, 1, ids_restore[..., None].expand(-1, -1, d))
        x = torch.cat([x[:, :1], y], 1) + self.dpos
        for b in self.dblocks:
            x = b(x)
        pred = self.pred(self.dnorm(x))[:, 1:]
        p, h = self.p, img.shape[-1] // self.p
        t = img.reshape(B, 3, h, p, h, p).permute(0, 2, 4, 3, 5, 1).reshape(B, L, -1)
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
        loss = ((pred - t) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


class RandomImages(Dataset):
    def __init__(self, n, img):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, img, img, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i]}


class PlainStep:
    """One step of the plain reference loop."""

    def __init__(self, dims, args, loader):
        torch.manual_seed(0)
        self.model = RefMAE(dims[0], dims[1], dims[2], img=args.img).train()
        named = list(self.model.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and n not in ("cls", "mask_token")]
        other = [p for n, p in named if not (p.ndim >= 2 and n not in ("cls", "mask_token"))]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                                     lr=1.5e-4 * args.batch / 256, betas=(0.9, 0.95), fused=True)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / 2))
        self.loader = loader
        self.it = iter(loader)

    def __call__(self) -> float:
        t = time.perf_counter()
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            batch = next(self.it)
        loss = self.model(batch["image"])
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        return time.perf_counter() - t


class Interleave(Callback):
    """Times each Lightning step, then runs and times one plain step."""

    def __init__(self, plain: PlainStep):
        self.plain, self.lt, self.pt, self._t = plain, [], [], 0.0

    def on_train_batch_start(self, *a):
        self._t = time.perf_counter()

    def on_train_batch_end(self, *a):
        self.lt.append(time.perf_counter() - self._t)
        self.pt.append(self.plain())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="base", choices=sorted(VIT_SIZES))
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6, help="timed step pairs")
    ap.add_argument("--warmup", type=int, default=2, help="untimed step pairs")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = VIT_SIZES[args.size]
    total = args.steps + args.warmup
    loader = DataLoader(RandomImages(args.batch * total, args.img), batch_size=args.batch, drop_last=True)
    plain = PlainStep(dims, args, loader)
    torch.manual_seed(0)
    enc = ViT(embed_dim=dims[0], depth=dims[1], num_heads=dims[2], img_size=args.img)
    model = MAE(enc, base_lr=1.5e-4, warmup_steps=2)
    inter = Interleave(plain)
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=total, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[inter],
                      num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, loader)
    lt, pt = inter.lt[args.warmup :], inter.pt[args.warmup :]
    ratios = [a / b for a, b in zip(lt, pt)]
    ml, mp = statistics.median(lt), statistics.median(pt)
    print(f"MAE ViT-{args.size}/16 @{args.img}, batch {args.batch}, torch threads {torch.get_num_threads()}, "
          f"{len(lt)} timed step pairs after {args.warmup} warm-up")
    print("| arm | median step (s) | img/s |\n|---|---|---|")
    print(f"| vitlab MAE in Lightning | {ml:.3f} | {args.batch / ml:.2f} |")
    print(f"| plain PyTorch loop (timm blocks) | {mp:.3f} | {args.batch / mp:.2f} |")
    print(f"median per-step ratio Lightning / plain = {statistics.median(ratios):.3f} "
          f"(per step: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
