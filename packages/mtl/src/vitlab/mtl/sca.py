"""Sequential cross-attention multi-task learning (S. Kim, H. Choi, D. Min, "Sequential Cross Attention Based
Multi-task Learning", ICIP 2022; code `kimsunkyung/SCA_MTL`, an MTI-Net fork).

MTI-Net decoding (coarse to fine, s = 3 → 0) on HRNet-W18-small-v2 branches F^s (18, 36, 72, 144 channels at
strides 4-32) with attention in three places:

* **Self-attention per scale**: a two-block Swin stage (W-MSA then SW-MSA; patch size 1, 6 heads, window 7,
  MLP 4, LN out) on F^s, concatenated with F^s (2C_s channels).
* **CTAM** (cross-task attention at one scale): for each target t and source a ≠ t,
  ``V_{t←a} = GCA_{t,a}(G_t^s, G_a^s)`` and ``Ĝ_t^s = G_t^s + Red_s(concat_{a≠t}[G_t^s, V_{t←a}])`` with one
  reduction BasicBlock ``2C(T−1) → C`` per scale shared by all targets.
* **CSAM** (cross-scale attention) inside each task head: coarser task features are projected (1×1 conv+BN) to
  the target scale's width and attended by one GCA per target scale, reused for all its sources; the seven maps
  are upsampled to 1/4, concatenated and classified by 1×1 conv-BN-ReLU-1×1 conv.

**GCA** is ATRC's global-context linear attention: ``out_i = Σ_j V_j (K_j·Q_i) / max(Σ_j K_j·Q_i, 1e-12)`` with
``Q = softplus(φ_q(x_tgt))``, ``K = softplus(φ_k(x_src))`` (φ: 1×1 conv-BN-ReLU-1×1 conv-BN) and
``V = ReLU(BN(1×1 conv(x_src)))``; d = m = C_s; Xavier-uniform convolution init.

Between scales, **FPMA** (feature propagation with attention, s = 3, 2, 1): the concatenated task features go
through one Swin block, a softmax over the task axis weights them, a BasicBlock ``T·C → C`` fuses them and a
per-task squeeze-excitation plus ``Ĝ_t^s`` gives the feature that ITP_{s−1} receives (upsampled ×2).
**ITP_s** (initial task prediction): per task, 2 BasicBlocks on ``[F'^s, up(FPM_{s+1,t})]`` → G_t^s, with a
1×1 auxiliary prediction for deep supervision. The loss is MTI-Net's: every auxiliary prediction (upsampled to
the image) and the final output, each with the task's weight.

The released code does not run as is; the choices made here to make shapes consistent (each a named argument
or documented default):

1. ITP_s takes the 2C_s self-attention concat (+ C_s propagated channels for s < 3), as the concat is what the
   first BasicBlock consumes in the code; its output width is C_s.
2. The CSAM head's width follows the actual inputs: 6·C_0 + 4·C_1 + 2·C_2 + C_3 = 540 channels for W18
   (the code hard-codes 1080 = 4·(2C) sums, which matches no consistent wiring).
3. FPMA's softmax views the task-major concat as (B, T, C, H, W) (the code's (B, C, T, H, W) view interleaves
   tasks); its Swin block uses ``fpma_heads`` (4) reduced to the largest divisor of T·C_s.
4. Swin windows shrink to the feature map when it is smaller than 7 (as Swin itself does); maps are padded to
   whole windows otherwise.

From the code, not choices: FPMA's per-task SE block reduces C_s to C_s // 16 channels (``SEBlock(r=16)``:
1, 2, 4, 9 for W18) with a ReLU and a sigmoid gate; the HRNet backbone's BatchNorms use momentum 0.01
(``BN_MOMENTUM`` of its ``seg_hrnet.py``), the decoder's keep PyTorch's 0.1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SEModule
from timm.models.resnet import BasicBlock
from timm.models.swin_transformer import SwinTransformerBlock
from torch import Tensor, nn

from vitlab.core.backbones import HRNetFeatures
from vitlab.mtl.losses import task_loss
from vitlab.mtl.module import MultiTaskModule

__all__ = ["GCA", "CSAMHead", "SCAMTL", "SCAEncoder"]


def _conv_bn(cin: int, cout: int, relu: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def basic_block(cin: int, cout: int) -> BasicBlock:
    """timm ResNet BasicBlock with a 1×1 conv+BN shortcut when the width changes."""
    down = _conv_bn(cin, cout) if cin != cout else None
    return BasicBlock(cin, cout, downsample=down)


class GCA(nn.Module):
    """Global-context linear attention (ATRC): query map attends a source map of any resolution."""

    def __init__(self, channels: int, key_channels: int | None = None, value_channels: int | None = None) -> None:
        super().__init__()
        d = key_channels or channels
        m = value_channels or channels
        self.query = nn.Sequential(_conv_bn(channels, d, relu=True), _conv_bn(d, d))
        self.key = nn.Sequential(_conv_bn(channels, d, relu=True), _conv_bn(d, d))
        self.value = _conv_bn(channels, m, relu=True)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.xavier_uniform_(mod.weight)

    def forward(self, target: Tensor, source: Tensor) -> Tensor:
        B, _, H, W = target.shape
        q = F.softplus(self.query(target)).flatten(2)  # (B, d, HW)
        k = F.softplus(self.key(source)).flatten(2)  # (B, d, H'W')
        v = self.value(source).flatten(2)  # (B, m, H'W')
        context = v @ k.transpose(1, 2)  # (B, m, d)
        norm = (k.sum(-1, keepdim=True).transpose(1, 2) @ q).clamp(min=1e-12)  # (B, 1, HW)
        return ((context @ q) / norm).view(B, -1, H, W)


class _SwinBlock(SwinTransformerBlock):
    """timm's Swin block with its shifted-window mask built once per padded map size, not on every call.

    ``dynamic_mask=True`` rebuilds the mask from the map each forward, with slice fills from Python numbers (a
    host-to-device copy each on a GPU). The cache holds one mask per (size, dtype, device, inference mode): a
    mask made under ``inference_mode`` (validation) may not be used by autograd.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._masks: dict[tuple, Tensor | None] = {}

    def get_attn_mask(self, x: Tensor | None = None, device=None, dtype=None) -> Tensor | None:
        if x is None:
            return super().get_attn_mask(x, device, dtype)
        if torch.compiler.is_compiling():  # traced: built in the graph (constant-folded), no host-side cache
            return super().get_attn_mask(x)
        key = (x.shape[1], x.shape[2], x.dtype, x.device, torch.is_inference_mode_enabled())
        if key not in self._masks:
            self._masks[key] = super().get_attn_mask(x)
        return self._masks[key]


class _SwinStage(nn.Module):
    """Swin blocks on an NCHW map (patch size 1): alternating unshifted/shifted windows, LayerNorm out."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, heads: int, window: int = 7,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        res = tuple(int(r) for r in resolution)
        self.blocks = nn.Sequential(*[
            _SwinBlock(dim, res, num_heads=heads, window_size=window,
                       shift_size=0 if i % 2 == 0 else window // 2, dynamic_mask=True, drop_path=drop_path)
            for i in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.blocks(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def _heads(dim: int, wanted: int) -> int:
    return max(h for h in range(1, wanted + 1) if dim % h == 0)


class SCAEncoder(nn.Module):
    """HRNet + per-scale Swin + ITP/CTAM/FPMA: ``forward(image) -> ({t: [Ĝ_t^0..Ĝ_t^3]}, {t: [aux^0..aux^3]})``."""

    #: ``compile: true`` compiles the whole encoder as one region (vitlab.core.perf.compile_regions): its modules
    #: differ per task and scale (widths, windows, heads), so per-module regions would compile two dozen graphs
    #: and exceed dynamo's recompile limit; one graph is cheaper
    compile_region = True
    def __init__(self, tasks: list[str], num_outputs: dict[str, int], img_size: int | tuple[int, int] = 512,
                 hrnet: str = "hrnet_w18_small_v2", pretrained: bool = False, sa_heads: int = 6, sa_depth: int = 2,
                 fpma_heads: int = 4, window: int = 7, drop_path: float = 0.2) -> None:
        super().__init__()
        self.tasks = list(tasks)
        T = len(self.tasks)
        self.hrnet = HRNetFeatures(hrnet, pretrained)
        for m in self.hrnet.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.01  # the official HRNet's BN_MOMENTUM
        C = self.hrnet.out_channels
        self.widths = C
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        res = [(math.ceil(size[0] / st), math.ceil(size[1] / st)) for st in self.hrnet.strides]
        self.self_attn = nn.ModuleList(_SwinStage(c, r, sa_depth, _heads(c, sa_heads), window, drop_path)
                                       for c, r in zip(C, res))
        self.itp = nn.ModuleList()
        self.aux = nn.ModuleList()
        for s, c in enumerate(C):
            cin = 2 * c + (c if s < 3 else 0)
            self.itp.append(nn.ModuleDict({t: nn.Sequential(basic_block(cin, c), basic_block(c, c)) for t in tasks}))
            self.aux.append(nn.ModuleDict({t: nn.Conv2d(c, num_outputs[t], 1) for t in tasks}))
        # CTAM: one GCA per ordered task pair and scale, one shared reduction per scale
        self.ctam = nn.ModuleList(nn.ModuleDict({f"{t}__{a}": GCA(c) for t in tasks for a in tasks if a != t})
                                  for c in C)
        self.ctam_reduce = nn.ModuleList(basic_block(2 * c * (T - 1), c) if T > 1 else nn.Identity() for c in C)
        # FPMA at s = 3, 2, 1 (index s)
        self.fpma_attn = nn.ModuleDict({str(s): _SwinStage(T * C[s], res[s], 1, _heads(T * C[s], fpma_heads), window)
                                        for s in (1, 2, 3)})
        self.fpma_fuse = nn.ModuleDict({str(s): basic_block(T * C[s], C[s]) for s in (1, 2, 3)})
        self.fpma_se = nn.ModuleDict({str(s): nn.ModuleDict({t: SEModule(C[s], rd_channels=max(1, C[s] // 16)) for t in tasks})
                                      for s in (1, 2, 3)})
        self.up_proj = nn.ModuleDict({str(s): nn.ModuleDict({t: _conv_bn(C[s], C[s - 1], relu=True) for t in tasks})
                                      for s in (1, 2, 3)})

    def forward(self, image: Tensor) -> tuple[dict[str, list[Tensor]], dict[str, list[Tensor]]]:
        feats = self.hrnet(image)
        feats = [torch.cat([f, sa(f)], 1) for f, sa in zip(feats, self.self_attn)]
        T = len(self.tasks)
        out = {t: [None] * 4 for t in self.tasks}
        aux = {t: [None] * 4 for t in self.tasks}
        prop: dict[str, Tensor] | None = None
        for s in range(3, -1, -1):
            g = {}
            for t in self.tasks:
                x = feats[s]
                if prop is not None:
                    x = torch.cat([x, F.interpolate(prop[t], size=x.shape[-2:], mode="bilinear", align_corners=False)], 1)
                g[t] = self.itp[s][t](x)
                aux[t][s] = self.aux[s][t](g[t])
            if T > 1:
                g_hat = {}
                for t in self.tasks:
                    parts = []
                    for a in self.tasks:
                        if a != t:
                            parts += [g[t], self.ctam[s][f"{t}__{a}"](g[t], g[a])]
                    g_hat[t] = g[t] + self.ctam_reduce[s](torch.cat(parts, 1))
            else:
                g_hat = g
            for t in self.tasks:
                out[t][s] = g_hat[t]
            if s > 0:
                if T > 1:
                    cat = torch.cat([g_hat[t] for t in self.tasks], 1)
                    S = self.fpma_attn[str(s)](cat)
                    B, _, H, W = cat.shape
                    M = torch.softmax(S.view(B, T, -1, H, W), dim=1).view(B, -1, H, W)
                    fused = self.fpma_fuse[str(s)](M * cat)
                    prop = {t: self.up_proj[str(s)][t](self.fpma_se[str(s)][t](fused) + g_hat[t]) for t in self.tasks}
                else:
                    prop = {t: self.up_proj[str(s)][t](g_hat[t]) for t in self.tasks}
        return out, aux


class CSAMHead(nn.Module):
    """Per-task head with cross-scale attention (see the module docstring); ``forward(feats, image_size)``."""

    compile_region = True  # ``compile: true`` compiles each head (vitlab.core.perf.compile_regions)

    def __init__(self, widths: list[int], out_channels: int) -> None:
        super().__init__()
        C = list(widths)
        self.gca = nn.ModuleList(GCA(c) for c in C[:3])
        self.proj = nn.ModuleDict({f"{src}{dst}": _conv_bn(C[src], C[dst])
                                   for dst in range(3) for src in range(dst + 1, 4)})
        total = 6 * C[0] + 4 * C[1] + 2 * C[2] + C[3]  # [F_s, GCA] pairs: three at 1/4, two at 1/8, one at 1/16; F3
        self.in_channels = total
        self.classifier = nn.Sequential(nn.Conv2d(total, total, 1), nn.BatchNorm2d(total), nn.ReLU(inplace=True),
                                        nn.Conv2d(total, out_channels, 1))

    def forward(self, feats: list[Tensor], image_size: tuple[int, int]) -> Tensor:
        size = feats[0].shape[-2:]
        maps = []
        for dst in range(3):
            for src in range(3, dst, -1):
                s = self.proj[f"{src}{dst}"](feats[src])
                maps.append(torch.cat([feats[dst], self.gca[dst](feats[dst], s)], 1))
        maps.append(feats[3])
        x = torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False) if m.shape[-2:] != size else m
                       for m in maps], 1)
        return F.interpolate(self.classifier(x), size=tuple(image_size), mode="bilinear", align_corners=False)


class SCAMTL(MultiTaskModule):
    """Sequential cross-attention MTL (MTI-Net + CTAM + CSAM) on HRNet-W18-small-v2.

    Args:
        tasks, num_outputs, loss_weights, reference: see :class:`~vitlab.mtl.MultiTaskModule`. The released
            configs use other weights (NYUD semseg 1.44 / depth 1.15; PASCAL semseg 1 / parts 2 / sal 5).
        img_size: training resolution (512 PASCAL, 480×640 NYUD): sets the Swin windows per scale.
        hrnet, pretrained: timm HRNet variant and ImageNet weights (online).
        sa_heads, sa_depth, fpma_heads, window, drop_path: attention settings (6, 2, 4, 7, 0.2).
        deep_supervision: add the auxiliary losses of every scale (True, as MTI-Net).
        **kwargs: optimizer and schedule options of :class:`vitlab.core.VitlabModule` (the code: Adam lr 1e-4,
            wd 1e-4, poly decay; here the library's warmup-cosine).
    """

    def __init__(self, tasks: list[str], img_size: int | tuple[int, int] = 512, hrnet: str = "hrnet_w18_small_v2",
                 pretrained: bool = False, sa_heads: int = 6, sa_depth: int = 2, fpma_heads: int = 4, window: int = 7,
                 drop_path: float = 0.2, deep_supervision: bool = True, num_outputs: dict[str, int] | None = None,
                 loss_weights: dict[str, float] | None = None, reference: str | dict[str, float] | None = None,
                 **kwargs: Any) -> None:
        from vitlab.mtl.module import TASK_OUTPUTS, _check_tasks

        tasks = _check_tasks(tasks)
        outs = {t: int((num_outputs or {}).get(t, TASK_OUTPUTS[t])) for t in tasks}
        encoder = SCAEncoder(tasks, outs, img_size, hrnet, pretrained, sa_heads, sa_depth, fpma_heads, window,
                             drop_path)
        encoder.out_channels = encoder.widths
        super().__init__(backbone=encoder, tasks=tasks, num_outputs=num_outputs, loss_weights=loss_weights,
                         reference=reference, **kwargs)
        self.deep_supervision = deep_supervision
        self.save_hyperparameters()

    def make_decoder(self, task: str) -> nn.Module:
        return CSAMHead(self.backbone.widths, self.num_outputs[task])

    def forward_with_aux(self, image: Tensor) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        feats, aux = self.backbone(image)
        size = image.shape[-2:]
        out = {t: self.decoders[t](feats[t], size).float() for t in self.tasks}
        return out, aux

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.forward_with_aux(image)[0]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out, aux = self.forward_with_aux(batch["image"])
        total, losses = self.criterion(out, batch)
        if self.deep_supervision:
            size = batch["image"].shape[-2:]
            for t in self.tasks:
                for a in aux[t]:
                    up = F.interpolate(a.float(), size=size, mode="bilinear", align_corners=False)
                    total = total + self.criterion.weights[t] * task_loss(t, up, batch[t])
        self.log("train/loss", total, prog_bar=True)
        self.log_dict({f"train/loss_{t}": v for t, v in losses.items()})
        return total
