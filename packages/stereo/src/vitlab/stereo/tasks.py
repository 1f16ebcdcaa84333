"""Stereo LightningModules: supervised CroCo-Stereo fine-tuning, UniTT-Stereo, MaDis-Stereo.

Batches are dicts: ``image`` / ``right`` (B, 3, H, W) ImageNet-normalised, ``disparity`` (B, 1, H, W) pixels
(+inf invalid), optionally ``occlusion`` (B, 1, H, W) bool (True = occluded in the right view), ``index``.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from vitlab.core import EMATeacher, VitlabModule
from vitlab.core.backbones import MaskOutput, patchify, random_masking
from vitlab.core.visualize import colorize_depth, panel, to_uint8_image

from .benchmark import ZeroShotEvaluator, ZeroShotStereoDataModule
from .losses import (
    LaplacianLossBounded2,
    MaskedMSE,
    StereoL1Loss,
    build_stereo_loss,
    feature_warp_consistency,
)
from .metrics import StereoMetrics
from .model import BinocularViT
from .tiling import (
    CONF_MODES,
    budget_window,
    confidence_weight,
    forward_padded,
    frame_tokens,
    rescale_views,
    restore_disparity,
    tiled_predict,
)

__all__ = ["MaDisStereo", "StereoMatching", "UniTTStereo", "sample_mask_ratio"]


class InferencePlan(NamedTuple):
    """What :meth:`StereoMatching.inference_plan` chose: ``mode`` (``"full frame"``, ``"tiles"`` or
    ``"budget tiles"``), ``window`` ``(h, w)`` (``None`` = full frame), tile ``overlap``, ``max_batch`` (images
    per tiled forward, windows x batch) and the full-frame ``tokens`` (batch x per-view tokens)."""

    mode: str
    window: tuple[int, int] | None
    overlap: float
    max_batch: int
    tokens: int


def _token_mask(batch: int, grid: tuple[int, int], ratio: float, device) -> MaskOutput:
    """CroCo ``RandomMask``: exactly ``int(ratio * N)`` masked tokens per sample (core ``random_masking``
    with CroCo's count rule)."""
    return random_masking(batch, grid, ratio, device, count="mask")


def sample_mask_ratio(low: float, high: float, mean: float, std: float, generator=None) -> float:
    """UniTT-Stereo ratio: one draw of TruncNormal(mean, std; [low, high]) rounded to 1 decimal [code].

    Drawn on the host by inverse-CDF sampling from Python's ``random`` (seeded by ``seed_everything``), so
    the training step reads nothing back from a tensor. ``generator``: a ``random.Random`` or a CPU
    ``torch.Generator`` for a reproducible stream.
    """
    if isinstance(generator, torch.Generator):
        u01 = float(torch.rand((), generator=generator))
    else:
        u01 = (generator if generator is not None else random).random()
    dist = NormalDist(mean, std)
    lo, hi = dist.cdf(low), dist.cdf(high)
    u = lo + (hi - lo) * u01
    u = min(max(u, 1e-12), 1.0 - 1e-12)
    return round(min(max(dist.inv_cdf(u), low), high), 1)


class StereoMatching(VitlabModule):
    """Supervised stereo fine-tuning of a :class:`BinocularViT` (the CroCo-Stereo recipe).

    Args:
        model: the network (``{class_path: vitlab.stereo.BinocularViT, init_args: {preset: L-B, pretrained: ...}}``).
        loss: ``"laplacian_bounded2"`` (CroCo-Stereo main model), ``"laplacian"`` (ETH3D model) or ``"l1"``.
        tile_size: window ``[h, w]`` of tiled validation/test/predict inference (the training crop,
            CroCo-Stereo 352 x 704); ``None`` = one full-frame forward (padded to a multiple of 32).
        tile_overlap: 0.7 (validation); use 0.9 for benchmark submissions.
        conf_mode: tile fusion weight, ``conf_expsigmoid_15_3`` (default) or ``conf_expbeta3`` (ETH3D model).
        max_tokens: memory budget of one forward at inference, in tokens (``B x h/16 x w/16`` per view): with
            no ``tile_size`` a frame within it runs full frame, a larger one runs in the largest near-square
            windows within it (:func:`~vitlab.stereo.tiling.budget_window`) at ``budget_overlap``; tiles are
            batched up to it. The choice is logged once per frame size. 16384 (a 2048 x 2048 frame): the quickstart
            model predicts a 12 MP pair in budget tiles at 3.6 GiB peak RSS, 4 MP full frame at 3.1 GiB (CPU,
            ``benchmarks/stereo_predict_memory.py``, table in the README); ``None`` = always full frame.
        budget_overlap: overlap of the budget windows (0.25: they are large, a margin for their borders
            suffices; the training-crop tiles use ``tile_overlap``).
        upscale_rule: images smaller than ``tile_size``: ``fixed`` (default, size by ceil, bilinear back) or
            ``official`` (CroCo-Stereo: rounded size, bicubic back); see :func:`tiled_predict`.
        metric_reduction: ``"image"`` (CroCo validation) or ``"pixel"`` (KITTI pooling), see :class:`StereoMetrics`.
        eval_max_disparity: ignore GT above this in metrics (SceneFlow: 192); None = all.
        right_shift: training-only batch augmentation (a vitlab addition, not in CroCo-Stereo; 0 = off): the right
            view is shifted left by ``s ~ U{0..right_shift}`` px (replicate padding) and ``s`` is added to the GT
            disparity. The same left image then maps to several disparities, so a network cannot solve the task
            from the left view alone (a shortcut a small model trained from scratch on SyntheticScenes takes).
        corr_loss_weight: weight of an L1 loss on the correlation's own soft-argmin disparity
            (``BinocularViT(corr_disparities > 0)``, :attr:`MaskedForward.coarse`), added to the disparity
            loss; 0 (default) = off, and ignored without a correlation. A vitlab addition (neither CroCo-Stereo
            nor UniTT/MaDis has a correlation): the output is ``DPT + coarse``, so without it the cost volume
            is only trained through the sum and the DPT residual can absorb its errors; supervising the soft
            argmin directly with L1, as GC-Net / PSMNet train theirs, makes the stem's features match on their
            own. The UniTT and MaDis quickstarts set it (1.0); see the README for what it changed.
        lr, weight_decay, warmup_epochs, ...: :class:`vitlab.core.VitlabModule`; defaults are CroCo-Stereo's
            (AdamW (0.9, 0.95), lr 3e-5, wd 0.05, 1 warm-up epoch then half-cycle cosine to ``min_lr`` 0).
    """

    default_writer = "vitlab.stereo.writer.StereoPredictionWriter"

    #: whether the method trains CroCo's ``mask_token`` / ``prediction_head`` (frozen when it does not)
    uses_pretext_parts = False

    def __init__(
        self,
        model: BinocularViT,
        loss: str = "laplacian_bounded2",
        tile_size: list[int] | None = None,
        tile_overlap: float = 0.7,
        conf_mode: str = "conf_expsigmoid_15_3",
        max_tokens: int | None = 16384,
        budget_overlap: float = 0.25,
        upscale_rule: str = "fixed",
        metric_reduction: str = "image",
        eval_max_disparity: float | None = None,
        right_shift: int = 0,
        corr_loss_weight: float = 0.0,
        lr: float = 3e-5,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        if conf_mode not in CONF_MODES:
            raise ValueError(f"conf_mode must be one of {CONF_MODES}, got {conf_mode!r}")
        self.save_hparams("model")
        self.net = model
        if not self.uses_pretext_parts:
            # CroCo's pretext parts stay in the network (and its checkpoints) but do not train here: a parameter
            # that gets no gradient stops DDP at its second step
            for part in (getattr(model, "mask_token", None), getattr(model, "prediction_head", None)):
                if part is not None:
                    part.requires_grad_(False)
        self.criterion = build_stereo_loss(loss)
        self.tile_size = list(tile_size) if tile_size else None
        self.tile_overlap = tile_overlap
        if max_tokens is not None and max_tokens < 4:
            raise ValueError(f"max_tokens must be >= 4 (one 32 x 32 window) or null, got {max_tokens}")
        if not 0.0 <= budget_overlap < 1.0:
            raise ValueError(f"budget_overlap must be in [0, 1), got {budget_overlap}")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.budget_overlap = float(budget_overlap)
        self._plans_logged: set = set()
        self.right_shift = int(right_shift)
        if corr_loss_weight < 0:
            raise ValueError(f"corr_loss_weight must be >= 0, got {corr_loss_weight}")
        self.corr_loss_weight = float(corr_loss_weight)
        self.corr_criterion = StereoL1Loss()
        self.conf_mode = conf_mode
        self.upscale_rule = upscale_rule
        mk = dict(reduction=metric_reduction, max_disparity=eval_max_disparity)
        self.val_metrics, self.val_metrics_noc = StereoMetrics(**mk), StereoMetrics(**mk)
        self.test_metrics, self.test_metrics_noc = StereoMetrics(**mk), StereoMetrics(**mk)

        self.train_max_disparity: float | None = None

    # ------------------------------------------------------------------ trained disparity range
    def on_fit_start(self) -> None:
        """Remember the largest disparity of the training data when the DataModule states it
        (``SyntheticStereoDataModule.max_disparity``); it is stored in the checkpoint (``train_max_disparity``)
        so inference can pick a ``scale`` (:func:`vitlab.stereo.suggest_scale`)."""
        super().on_fit_start()
        dm = getattr(self.trainer, "datamodule", None)
        value = getattr(dm, "max_disparity", None)
        if isinstance(value, (int, float)) and value > 0:
            self.train_max_disparity = float(value)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.train_max_disparity is not None:
            checkpoint["train_max_disparity"] = self.train_max_disparity

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        value = checkpoint.get("train_max_disparity")
        self.train_max_disparity = float(value) if value is not None else None

    # ------------------------------------------------------------------ inference
    def forward(self, left: Tensor, right: Tensor) -> Tensor:
        return self.net(left, right)

    def forward_padded(self, left: Tensor, right: Tensor) -> Tensor:
        """Full-frame forward for any size (:func:`vitlab.stereo.tiling.forward_padded`)."""
        return forward_padded(self.net, left, right)

    def inference_plan(self, shape: tuple[int, ...], tiled: bool | None = None) -> InferencePlan:
        """How a ``(B, 3, H, W)`` batch (already at the network's scale) is predicted.

        ``tiled=False``: one full-frame forward. ``True``: tiles of ``tile_size`` (or the network's
        ``img_size``) at ``tile_overlap``. ``None``: tiles of ``tile_size`` when it is set; otherwise full frame
        when ``B x`` :func:`~vitlab.stereo.tiling.frame_tokens` fits ``max_tokens``, else budget windows at
        ``budget_overlap``. Tiles are batched so that one forward stays within ``max_tokens``.
        """
        B, H, W = shape[0], shape[-2], shape[-1]
        p = getattr(self.net, "patch_size", 16)
        tokens = B * frame_tokens(H, W, p)
        budget = self.max_tokens
        if tiled is False or (tiled is None and self.tile_size is None and (budget is None or tokens <= budget)):
            return InferencePlan("full frame", None, 0.0, 1, tokens)
        if tiled or self.tile_size is not None:
            window = tuple(self.tile_size or [g * p for g in self.net.encoder.grid_size])
            mode, overlap = "tiles", self.tile_overlap
        else:
            window = budget_window(H, W, max(4, budget // B), p)
            mode, overlap = "budget tiles", self.budget_overlap
        per_window = B * (window[0] // p) * (window[1] // p)
        windows = 8 if budget is None else max(1, budget // per_window)
        return InferencePlan(mode, window, overlap, windows * B, tokens)

    def _log_plan(self, shape: tuple[int, ...], plan: InferencePlan) -> None:
        key = (tuple(shape), plan.mode, plan.window)
        if key in self._plans_logged:
            return
        self._plans_logged.add(key)
        budget = "no budget" if self.max_tokens is None else f"max_tokens {self.max_tokens}"
        how = plan.mode if plan.window is None else \
            f"{plan.mode} of {plan.window[0]} x {plan.window[1]} at overlap {plan.overlap:g}"
        rank_zero_info(f"vitlab.stereo: {shape[-2]} x {shape[-1]} (batch {shape[0]}, {plan.tokens} tokens, {budget}): "
                       f"{how}")

    @torch.no_grad()
    def predict_disparity(self, left: Tensor, right: Tensor, scale: float = 1.0,
                          tiled: bool | None = None) -> tuple[Tensor, Tensor]:
        """``(disparity (B, 1, H, W), confidence weight (B, 1, H, W))`` of normalised views.

        ``tiled``: ``None`` = chosen by :meth:`inference_plan` (``tile_size``, else full frame within
        ``max_tokens``, else budget windows), ``True`` = tiles of ``tile_size`` (or the network's
        ``img_size``), ``False`` = one full-frame forward. ``scale``: the network sees both views
        resized by ``scale``; the output comes back at ``H x W``, disparity times ``W / w``
        (see :mod:`vitlab.stereo.predict`).
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        size = left.shape[-2:]
        left, right = rescale_views(left, right, scale)
        plan = self.inference_plan(tuple(left.shape), tiled)
        self._log_plan(tuple(left.shape), plan)
        if plan.window is not None:
            disp, conf = tiled_predict(self.net, left, right, plan.window, plan.overlap, self.conf_mode,
                                       max_batch=plan.max_batch, upscale_rule=self.upscale_rule)
        else:
            out = self.forward_padded(left, right).float()
            disp, conf = out[:, :1], confidence_weight(out[:, 1:2], self.conf_mode)
        if tuple(disp.shape[-2:]) != tuple(size):
            conf = F.interpolate(conf, size=tuple(size), mode="bilinear", align_corners=False)
            disp = restore_disparity(disp, tuple(size))
        return disp, conf

    # ------------------------------------------------------------------ steps
    def disparity_loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return self.criterion(out, batch["disparity"])

    @property
    def supervises_correlation(self) -> bool:
        """Whether ``corr_loss_weight`` applies (it is set and the network has a correlation)."""
        return self.corr_loss_weight > 0 and getattr(self.net, "corr", None) is not None

    def corr_loss(self, coarse: Tensor | None, batch: dict[str, Tensor]) -> Tensor | None:
        """``corr_loss_weight x L1(coarse, GT)`` when :attr:`supervises_correlation` (logged as
        ``train/loss_corr``, unweighted), else ``None``."""
        if coarse is None or not self.supervises_correlation:
            return None
        l_corr = self.corr_criterion(coarse, batch["disparity"])
        self.log("train/loss_corr", l_corr)
        return self.corr_loss_weight * l_corr

    def shift_right(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The ``right_shift`` augmentation (see the class docstring); one shift per batch."""
        if self.right_shift <= 0:
            return batch
        s = random.randint(0, self.right_shift)  # host RNG (seeded by seed_everything): no device read
        if s == 0:
            return batch
        batch = dict(batch)
        right = batch["right"]
        batch["right"] = torch.cat([right[..., s:], right[..., -1:].expand(*right.shape[:-1], s)], dim=-1)
        batch["disparity"] = batch["disparity"] + s  # +inf stays invalid
        return batch

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = self.shift_right(batch)
        if self.supervises_correlation:
            s = self.net.forward_parts(batch["image"], batch["right"])
            loss = self.disparity_loss(s.disparity, batch) + self.corr_loss(s.coarse, batch)
        else:
            loss = self.disparity_loss(self(batch["image"], batch["right"]), batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        disp, _ = self.predict_disparity(batch["image"], batch["right"])
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(disp, batch["disparity"])
        if "occlusion" in batch:
            noc = self.val_metrics_noc if stage == "val" else self.test_metrics_noc
            noc.update(disp, batch["disparity"], mask=~batch["occlusion"].bool())
        return disp

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def on_test_start(self) -> None:
        """A :class:`~vitlab.stereo.ZeroShotStereoDataModule` run scores each benchmark under its protocol
        (:mod:`vitlab.stereo.benchmark`); any other test run scores ``test/`` as validation does."""
        super().on_test_start()
        dm = getattr(self.trainer, "datamodule", None)
        self.zero_shot = None
        if isinstance(dm, ZeroShotStereoDataModule):
            self.zero_shot = ZeroShotEvaluator.for_datamodule(dm, self.train_max_disparity).to(self.device)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        if getattr(self, "zero_shot", None) is not None:
            return self.zero_shot.step(self, batch, dataloader_idx, normalized=self.trainer.datamodule.normalize)
        return self._eval_step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        pairs = [(self.val_metrics, f"{stage}/"), (self.val_metrics_noc, f"{stage}/noc/")]
        if stage == "test":
            pairs = [(self.test_metrics, "test/"), (self.test_metrics_noc, "test/noc/")]
        for metric, prefix in pairs:
            if metric.update_called:
                self.log_dict({prefix + k: v for k, v in metric.compute().items()},
                              prog_bar=prefix == "val/")
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        if getattr(self, "zero_shot", None) is not None:
            self.zero_shot.finish(self)
            return
        self._log_metrics("test")

    def on_test_end(self) -> None:
        super().on_test_end()
        self.zero_shot = None  # the per-benchmark metrics live for one test run only

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        scale = batch.get("scale")  # StereoPairsDataModule(scale=...): one value for the whole set
        scale = 1.0 if scale is None else float(scale[0] if torch.is_tensor(scale) and scale.ndim else scale)
        disp, conf = self.predict_disparity(batch["image"], batch["right"], scale=scale)
        out = {"disparity": disp, "confidence": conf}
        for key in ("index", "name"):
            if key in batch:
                out[key] = batch[key]
        return out

    @torch.no_grad()
    def visualize(self, batch: dict[str, Tensor], output: Tensor, max_images: int = 4) -> dict[str, np.ndarray]:
        """Left image | predicted disparity | ground truth, one colour range per sample."""
        n = min(max_images, len(output))
        pics = {}
        for i in range(n):
            gt = batch["disparity"][i, 0]
            fin = gt[torch.isfinite(gt)]
            vmax = float(fin.max()) if fin.numel() else float(output[i].max())
            pics[f"{i}: left | prediction | target"] = panel([
                to_uint8_image(batch["image"][i]),
                colorize_depth(output[i, 0], vmin=0.0, vmax=vmax),
                colorize_depth(gt, vmin=0.0, vmax=vmax),
            ])
        return pics


def _require_decoder_hooks(model: BinocularViT, method: str) -> None:
    """The masked methods mask the left view, so the DPT head must read decoder blocks only."""
    if min(model.hooks) < model.enc_depth:
        raise ValueError(
            f"{method} masks the left view, so its DPT head must read decoder blocks only: build the model with "
            f"hook_mode='decoder' (got hooks {model.hooks} with encoder depth {model.enc_depth})"
        )


class UniTTStereo(StereoMatching):
    """UniTT-Stereo (Kim et al., IEEE Access 2025; official code `00kim/UniTT-Stereo`).

    Each training step draws a left-only mask ratio ``r ~ TruncNormal(mean, std; [low, high])`` rounded to
    one decimal [code]; :meth:`BinocularViT.forward_masked` encodes the visible left tokens and the full right
    view, the decoder fills the masked left positions with ``mask_token`` (with ``corr_disparities > 0`` the
    correlation sees both full views, see there); outputs: disparity + confidence (decoder-only DPT hooks),
    reconstruction of the masked left patches (norm-pix MSE), and a feature-warp consistency between left
    encoder features (zeros at masked tokens) and right features warped by the GT disparity at 1/16.

    Total loss with ``t = tanh(L_rec)`` [code]: ``r = 0`` -> ``L_disp``; ``t <= gate_threshold`` ->
    ``disp_weight L_disp + rec_weight L_rec + cons_weight L_cons``; otherwise ``L_rec + L_cons`` (the disparity
    term waits until reconstruction is good enough).

    The gate presumes CroCo-pre-trained weights, whose masked-patch error already starts near the threshold.
    From random weights the norm-pix MSE starts at ~1 (tanh 0.76) and stays above 0.42 for thousands of
    steps, so the disparity term is off on every masked step and only the ~10 % of steps drawing ``r = 0``
    train it: the quickstart model then barely learns to match. ``gate_threshold >= 1`` turns the gate off
    (``tanh < 1``: always the weighted sum), which the from-scratch quickstart uses; the reconstruction and
    consistency terms train as before.

    Args:
        model: a :class:`BinocularViT` with ``hook_mode="decoder"``.
        mask_ratio: ``[low, high, mean, std]``; code default ``[0.0, 0.5, 0.25, 1.0]`` (the paper's values are
            not public).
        consistency_mode: ``"fixed"`` (default, our reconstruction) or ``"official"`` (the official code's three
            bugs, see :func:`vitlab.stereo.losses.feature_warp_consistency`).
        disp_weight, rec_weight, cons_weight, gate_threshold: 3, 1, 1, 0.4 [code]; ``gate_threshold >= 1``:
            no gate (a vitlab choice for training from scratch, see above).
        norm_pix_loss: standardise target patches (CroCo).
        **kwargs: :class:`StereoMatching` options.
    """

    uses_pretext_parts = True  # trains mask_token and prediction_head

    def __init__(
        self,
        model: BinocularViT,
        mask_ratio: list[float] | None = None,
        consistency_mode: str = "fixed",
        disp_weight: float = 3.0,
        rec_weight: float = 1.0,
        cons_weight: float = 1.0,
        gate_threshold: float = 0.4,
        norm_pix_loss: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.save_hparams("model")
        _require_decoder_hooks(model, "UniTTStereo")
        mask_ratio = [0.0, 0.5, 0.25, 1.0] if mask_ratio is None else [float(v) for v in mask_ratio]
        if len(mask_ratio) != 4 or not 0.0 <= mask_ratio[0] <= mask_ratio[1] < 1.0:
            raise ValueError(f"mask_ratio must be [low, high, mean, std] with 0 <= low <= high < 1, got {mask_ratio}")
        if consistency_mode not in ("fixed", "official"):
            raise ValueError(f"consistency_mode must be 'fixed' or 'official', got {consistency_mode!r}")
        self.mask_ratio = mask_ratio
        self.consistency_mode = consistency_mode
        self.weights = (disp_weight, rec_weight, cons_weight)
        self.gate_threshold = gate_threshold
        self.mse = MaskedMSE(norm_pix=norm_pix_loss)
        self.last_ratio: float | None = None
        # every ratio the sampler can return (rounded to 0.1 in [0, 1)), on the module's device
        self.register_buffer("_ratio_table", torch.arange(11) / 10.0, persistent=False)

    def sample_ratio(self) -> float:
        return sample_mask_ratio(*self.mask_ratio)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        left, right, gt = batch["image"], batch["right"], batch["disparity"]
        p = self.net.patch_size
        grid = (left.shape[-2] // p, left.shape[-1] // p)
        r = self.sample_ratio()
        self.last_ratio = r
        m = _token_mask(left.shape[0], grid, r, left.device)
        masked = int(r * grid[0] * grid[1]) > 0  # host-known
        s = self.net.forward_masked(left, right, keep_left=m.ids_keep if masked else None)
        l_disp = self.disparity_loss(s.disparity, batch)
        l_corr = self.corr_loss(s.coarse, batch)
        if l_corr is not None:  # part of the disparity term: gated with it
            l_disp = l_disp + l_corr
        mask = m.mask > 0.5
        l_rec = self.mse(s.recon_left, patchify(left, p), mask)  # 0 (with its graph) when nothing is masked
        if not masked:  # reconstruction is 0/0 in the official code: both terms off, L = L_disp
            l_cons = l_disp.new_zeros(())
            loss = l_disp + 0.0 * l_rec  # the pixel head stays in the graph (DDP)
        else:
            l_cons = feature_warp_consistency(s.feat_left, s.feat_right, gt, grid, p, visible=~mask,
                                              mode=self.consistency_mode)
            wd, wr, wc = self.weights
            # the gate is chosen on the device (no host read of the loss); the other branch's terms get a
            # zero gradient, so the head stays in the graph (DDP) either way
            gate = torch.tanh(l_rec.detach()) <= self.gate_threshold
            loss = torch.where(gate, wd * l_disp + wr * l_rec + wc * l_cons, l_rec + l_cons + 0.0 * l_disp)
        # the ratio is a host float: logged as an entry of a device table (no host-to-device copy per step)
        self.log_dict({"train/loss_disp": l_disp, "train/loss_rec": l_rec, "train/loss_cons": l_cons,
                       "train/mask_ratio": self._ratio_table[round(r * 10)]}, prog_bar=False)
        self.log("train/loss", loss, prog_bar=True)
        return loss


class MaDisStereo(StereoMatching):
    """MaDis-Stereo (Ahn et al., IEEE Access 2025): masked stereo student + EMA teacher pseudo-disparity.

    Student [code, ``MaDis_finetuning`` mode 1; :meth:`BinocularViT.forward_masked` with both views masked]:
    both views masked with independent masks (``mask_ratio``, 0.4 [paper summary]); visible tokens encoded; encoder outputs zero-filled to full length; decoder pass A
    (masked left + ``mask_token`` against the zero-filled right) gives disparity + confidence and the left
    reconstruction, pass B (masked right against the zero-filled left, same weights) the right reconstruction.

    Objective (an [inferred] reconstruction; every choice is a named argument):
    ``L = disp_weight L_disp(GT) + rec_weight (MSE_L + MSE_R) + pseudo_weight L_pseudo(d_S, sg(d_T))`` with
    ``L_disp`` = the configured stereo loss on valid GT, MSE = norm-pix masked-patch MSE, and ``L_pseudo``
    (``pseudo_loss``: ``"l1"`` or ``"laplacian"`` = LaplacianLossBounded2) over all pixels against the teacher
    disparity. The teacher is a :class:`vitlab.core.EMATeacher` of the network (frozen, eval mode, updated
    once per optimizer step with ``ema_decay`` 0.999 [inferred]) fed the ``teacher_input`` views:
    ``"unmasked"`` (default) or ``"masked"`` (the student's masked views).

    ``pseudo_rampup_steps`` (a vitlab choice, 0 = off = the constant weight above): the pseudo-disparity weight
    follows Mean Teacher's sigmoid ramp-up ``pseudo_weight exp(-5 (1 - t)^2)``, ``t = min(1, step / steps)``
    (Tarvainen & Valpola, NeurIPS 2017, who ramp the consistency weight up because an early teacher knows
    no more than the student). Trained from scratch with the full weight from step 0, the L1 pull towards a
    random teacher, over every pixel and with a gradient that does not shrink with the Laplacian confidence
    as the GT term's does, pins the student to its own past: the quickstart did not learn (EPE above the
    zero-disparity baseline). With ``ema_schedule: mean_teacher`` the early teacher also follows fast.

    Args:
        model: a :class:`BinocularViT` with ``hook_mode="decoder"``.
        mask_ratio, ema_decay, ema_schedule, disp_weight, rec_weight, pseudo_weight, pseudo_loss,
        teacher_input, norm_pix_loss, pseudo_rampup_steps: see above. **kwargs: :class:`StereoMatching` options.
    """

    uses_pretext_parts = True  # trains mask_token and prediction_head

    def __init__(
        self,
        model: BinocularViT,
        mask_ratio: float = 0.4,
        ema_decay: float = 0.999,
        ema_schedule: str = "constant",
        disp_weight: float = 1.0,
        rec_weight: float = 1.0,
        pseudo_weight: float = 1.0,
        pseudo_loss: str = "l1",
        teacher_input: str = "unmasked",
        norm_pix_loss: bool = True,
        pseudo_rampup_steps: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.save_hparams("model")
        _require_decoder_hooks(model, "MaDisStereo")
        if pseudo_rampup_steps < 0:
            raise ValueError(f"pseudo_rampup_steps must be >= 0, got {pseudo_rampup_steps}")
        self.pseudo_rampup_steps = int(pseudo_rampup_steps)
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if pseudo_loss not in ("l1", "laplacian"):
            raise ValueError(f"pseudo_loss must be 'l1' or 'laplacian', got {pseudo_loss!r}")
        if teacher_input not in ("unmasked", "masked"):
            raise ValueError(f"teacher_input must be 'unmasked' or 'masked', got {teacher_input!r}")
        self.mask_ratio = mask_ratio
        self.weights = (disp_weight, rec_weight, pseudo_weight)
        self.pseudo_loss = pseudo_loss
        self.teacher_input = teacher_input
        self.teacher = EMATeacher(model, decay=ema_decay, schedule=ema_schedule)
        self.mse = MaskedMSE(norm_pix=norm_pix_loss)
        self.pseudo_laplacian = LaplacianLossBounded2()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        left, right = batch["image"], batch["right"]
        B, p = left.shape[0], self.net.patch_size
        grid = (left.shape[-2] // p, left.shape[-1] // p)
        m_l = _token_mask(B, grid, self.mask_ratio, left.device)
        m_r = _token_mask(B, grid, self.mask_ratio, left.device)
        s = self.net.forward_masked(left, right, keep_left=m_l.ids_keep, keep_right=m_r.ids_keep)
        with torch.no_grad():
            if self.teacher_input == "unmasked":
                t_disp = self.teacher(left, right)[:, :1]
            else:
                t_disp = self.teacher.teacher.forward_masked(left, right, m_l.ids_keep, m_r.ids_keep).disparity[:, :1]
        l_disp = self.disparity_loss(s.disparity, batch)
        l_corr = self.corr_loss(s.coarse, batch)
        if l_corr is not None:
            l_disp = l_disp + l_corr
        l_rec = self.mse(s.recon_left, patchify(left, p), m_l.mask > 0.5) + \
            self.mse(s.recon_right, patchify(right, p), m_r.mask > 0.5)
        if self.pseudo_loss == "l1":
            l_pd = (s.disparity[:, :1] - t_disp).abs().mean()
        else:
            l_pd = self.pseudo_laplacian(s.disparity, t_disp)
        wd, wr, _ = self.weights
        loss = wd * l_disp + wr * l_rec + self.pseudo_weight_at(self.global_step) * l_pd
        self.log_dict({"train/loss_disp": l_disp, "train/loss_rec": l_rec, "train/loss_pseudo": l_pd})
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def pseudo_weight_at(self, step: int) -> float:
        """The pseudo-disparity weight at optimizer step ``step`` (host float, see ``pseudo_rampup_steps``)."""
        wp = self.weights[2]
        if self.pseudo_rampup_steps <= 0:
            return wp
        t = min(1.0, step / self.pseudo_rampup_steps)
        return wp * math.exp(-5.0 * (1.0 - t) ** 2)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.teacher.maybe_update(self.net, self.trainer.global_step)
