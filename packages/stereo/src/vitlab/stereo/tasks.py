"""Stereo LightningModules: supervised CroCo-Stereo fine-tuning, UniTT-Stereo, MaDis-Stereo.

Batches are dicts: ``image`` / ``right`` (B, 3, H, W) ImageNet-normalised, ``disparity`` (B, 1, H, W) pixels
(+inf invalid), optionally ``occlusion`` (B, 1, H, W) bool (True = occluded in the right view), ``index``.
"""

from __future__ import annotations

import random
from statistics import NormalDist

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vitlab.core import EMATeacher, VitlabModule
from vitlab.core.backbones import patchify, random_masking
from vitlab.core.visualize import colorize_depth, panel, to_uint8_image

from .benchmark import ZeroShotEvaluator, ZeroShotStereoDataModule
from .losses import LaplacianLossBounded2, MaskedMSE, build_stereo_loss, feature_warp_consistency
from .metrics import StereoMetrics
from .model import BinocularViT
from .tiling import CONF_MODES, confidence_weight, tiled_predict

__all__ = ["MaDisStereo", "StereoMatching", "UniTTStereo", "random_token_mask", "sample_mask_ratio"]


def random_token_mask(batch: int, num_tokens: int, ratio: float, device=None) -> tuple[Tensor, Tensor]:
    """CroCo ``RandomMask``: exactly ``int(ratio * N)`` masked tokens per sample, uniformly at random (core
    :func:`~vitlab.core.backbones.patches.random_masking` with CroCo's count rule).

    Returns ``(mask (B, N) bool, True = masked; ids_keep (B, N - k) sorted visible indices)``.
    """
    m = random_masking(batch, num_tokens, ratio, device, count="mask")
    return m.mask > 0.5, m.ids_keep.sort(dim=1).values


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


def _scatter_tokens(visible: Tensor, ids_keep: Tensor, num_tokens: int) -> Tensor:
    """Zero-filled full-length tokens with ``visible`` at ``ids_keep`` (UniTT feat1, MaDis L_full / R_full)."""
    B, _, C = visible.shape
    full = visible.new_zeros(B, num_tokens, C)
    return full.scatter(1, ids_keep[..., None].expand(-1, -1, C), visible)


class StereoMatching(VitlabModule):
    """Supervised stereo fine-tuning of a :class:`BinocularViT` (the CroCo-Stereo recipe).

    Args:
        model: the network (``{class_path: vitlab.stereo.BinocularViT, init_args: {preset: L-B, pretrained: ...}}``).
        loss: ``"laplacian_bounded2"`` (CroCo-Stereo main model), ``"laplacian"`` (ETH3D model) or ``"l1"``.
        tile_size: window ``[h, w]`` of tiled validation/test/predict inference (the training crop,
            CroCo-Stereo 352 x 704); ``None`` = one full-frame forward (padded to a multiple of 32).
        tile_overlap: 0.7 (validation); use 0.9 for benchmark submissions.
        conf_mode: tile fusion weight, ``conf_expsigmoid_15_3`` (default) or ``conf_expbeta3`` (ETH3D model).
        upscale_rule: images smaller than ``tile_size``: ``fixed`` (default, size by ceil, bilinear back) or
            ``official`` (CroCo-Stereo: rounded size, bicubic back); see :func:`tiled_predict`.
        metric_reduction: ``"image"`` (CroCo validation) or ``"pixel"`` (KITTI pooling), see :class:`StereoMetrics`.
        eval_max_disparity: ignore GT above this in metrics (SceneFlow: 192); None = all.
        right_shift: training-only batch augmentation (a vitlab addition, not in CroCo-Stereo; 0 = off): the right
            view is shifted left by ``s ~ U{0..right_shift}`` px (replicate padding) and ``s`` is added to the GT
            disparity. The same left image then maps to several disparities, so a network cannot solve the task
            from the left view alone (a shortcut a small model trained from scratch on SyntheticScenes takes).
        lr, weight_decay, warmup_epochs, ...: :class:`vitlab.core.VitlabModule`; defaults are CroCo-Stereo's
            (AdamW (0.9, 0.95), lr 3e-5, wd 0.05, 1 warm-up epoch then half-cycle cosine to ``min_lr`` 0).
    """

    def __init__(
        self,
        model: BinocularViT,
        loss: str = "laplacian_bounded2",
        tile_size: list[int] | None = None,
        tile_overlap: float = 0.7,
        conf_mode: str = "conf_expsigmoid_15_3",
        upscale_rule: str = "fixed",
        metric_reduction: str = "image",
        eval_max_disparity: float | None = None,
        right_shift: int = 0,
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
        self.criterion = build_stereo_loss(loss)
        self.tile_size = list(tile_size) if tile_size else None
        self.tile_overlap = tile_overlap
        self.right_shift = int(right_shift)
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
        """Full-frame forward for any size: replicate-pad to a multiple of 32, then crop back."""
        H, W = left.shape[-2:]
        ph, pw = (-H) % 32, (-W) % 32
        if ph or pw:
            left = F.pad(left, (0, pw, 0, ph), mode="replicate")
            right = F.pad(right, (0, pw, 0, ph), mode="replicate")
        return self.net(left, right)[..., :H, :W]

    @torch.no_grad()
    def predict_disparity(self, left: Tensor, right: Tensor, scale: float = 1.0,
                          tiled: bool | None = None) -> tuple[Tensor, Tensor]:
        """``(disparity (B, 1, H, W), confidence weight (B, 1, H, W))`` of normalised views.

        ``tiled``: ``None`` = tiles when ``tile_size`` is set, ``True`` = tiles of ``tile_size`` (or the
        network's ``img_size``), ``False`` = one full-frame forward. ``scale``: the network sees both views
        resized by ``scale``; the output comes back at ``H x W``, disparity times ``W / w``
        (see :mod:`vitlab.stereo.predict`).
        """
        from .predict import rescale_views, restore_disparity

        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        size = left.shape[-2:]
        left, right = rescale_views(left, right, scale)
        if tiled is None:
            tiled = self.tile_size is not None
        if tiled:
            tile = self.tile_size or [g * self.net.patch_size for g in self.net.encoder.grid_size]
            disp, conf = tiled_predict(self.net, left, right, tile, self.tile_overlap, self.conf_mode,
                                       upscale_rule=self.upscale_rule)
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
    """The masked methods' model checks: decoder-only hooks, and no correlation (their masked training forward
    runs encoder, decoder and head directly, so a correlation would be used at evaluation but never trained)."""
    if model.corr is not None:
        raise ValueError(f"{method} does not support corr_disparities > 0 (its masked training forward has no "
                         "correlation); build the model with corr_disparities=0")
    if min(model.hooks) < model.enc_depth:
        raise ValueError(
            f"{method} masks the left view, so its DPT head must read decoder blocks only: build the model with "
            f"hook_mode='decoder' (got hooks {model.hooks} with encoder depth {model.enc_depth})"
        )


class UniTTStereo(StereoMatching):
    """UniTT-Stereo (Kim et al., IEEE Access 2025; official code `00kim/UniTT-Stereo`).

    Each training step draws a left-only mask ratio ``r ~ TruncNormal(mean, std; [low, high])`` rounded to
    one decimal [code]; the visible left tokens and the full right view are encoded, the decoder fills the
    masked left positions with ``mask_token``; outputs: disparity + confidence (decoder-only DPT hooks),
    reconstruction of the masked left patches (norm-pix MSE), and a feature-warp consistency between left
    encoder features (zeros at masked tokens) and right features warped by the GT disparity at 1/16.

    Total loss with ``t = tanh(L_rec)`` [code]: ``r = 0`` -> ``L_disp``; ``t <= gate_threshold`` ->
    ``disp_weight L_disp + rec_weight L_rec + cons_weight L_cons``; otherwise ``L_rec + L_cons`` (the disparity
    term waits until reconstruction is good enough).

    Args:
        model: a :class:`BinocularViT` with ``hook_mode="decoder"``.
        mask_ratio: ``[low, high, mean, std]``; code default ``[0.0, 0.5, 0.25, 1.0]`` (the paper's values are
            not public).
        consistency_mode: ``"fixed"`` (default, our reconstruction) or ``"official"`` (the official code's three
            bugs, see :func:`vitlab.stereo.losses.feature_warp_consistency`).
        disp_weight, rec_weight, cons_weight, gate_threshold: 3, 1, 1, 0.4 [code].
        norm_pix_loss: standardise target patches (CroCo).
        **kwargs: :class:`StereoMatching` options.
    """

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

    def sample_ratio(self) -> float:
        return sample_mask_ratio(*self.mask_ratio)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        net = self.net
        left, right, gt = batch["image"], batch["right"], batch["disparity"]
        B = left.shape[0]
        p = net.patch_size
        hw = (left.shape[-2] // p, left.shape[-1] // p)
        N = hw[0] * hw[1]
        r = self.sample_ratio()
        self.last_ratio = r
        mask, ids_keep = random_token_mask(B, N, r, left.device)
        enc_l, _, _ = net.encode(left, ids_keep if r > 0 else None)
        enc_r, _, _ = net.encode(right)
        dec = net.decode(enc_l[-1], enc_r[-1], hw, ids_keep if r > 0 else None)
        out = net.dense_head([None] * net.enc_depth + dec, left.shape[-2:])
        l_disp = self.disparity_loss(out, batch)
        if int(r * N) == 0:  # nothing masked (host-known): reconstruction is 0/0 in the official code, both terms off
            loss, l_rec, l_cons = l_disp, l_disp.new_zeros(()), l_disp.new_zeros(())
        else:
            l_rec = self.mse(net.reconstruct(dec[-1]), patchify(left, p), mask)
            feat_l = _scatter_tokens(enc_l[-1], ids_keep, N)
            l_cons = feature_warp_consistency(feat_l, enc_r[-1], gt, hw, p, visible=~mask,
                                              mode=self.consistency_mode)
            wd, wr, wc = self.weights
            # the gate is chosen on the device (no host read of the loss); the other branch's terms get a
            # zero gradient, so the head stays in the graph (DDP) either way
            gate = torch.tanh(l_rec.detach()) <= self.gate_threshold
            loss = torch.where(gate, wd * l_disp + wr * l_rec + wc * l_cons, l_rec + l_cons + 0.0 * l_disp)
        self.log_dict({"train/loss_disp": l_disp, "train/loss_rec": l_rec,
                       "train/loss_cons": l_cons, "train/mask_ratio": float(r)}, prog_bar=False)
        self.log("train/loss", loss, prog_bar=True)
        return loss


class MaDisStereo(StereoMatching):
    """MaDis-Stereo (Ahn et al., IEEE Access 2025): masked stereo student + EMA teacher pseudo-disparity.

    Student [code, ``MaDis_finetuning`` mode 1]: both views masked with independent masks (``mask_ratio``,
    0.4 [paper summary]); visible tokens encoded; encoder outputs zero-filled to full length; decoder pass A
    (masked left + ``mask_token`` against the zero-filled right) gives disparity + confidence and the left
    reconstruction, pass B (masked right against the zero-filled left, same weights) the right reconstruction.

    Objective (an [inferred] reconstruction; every choice is a named argument):
    ``L = disp_weight L_disp(GT) + rec_weight (MSE_L + MSE_R) + pseudo_weight L_pseudo(d_S, sg(d_T))`` with
    ``L_disp`` = the configured stereo loss on valid GT, MSE = norm-pix masked-patch MSE, and ``L_pseudo``
    (``pseudo_loss``: ``"l1"`` or ``"laplacian"`` = LaplacianLossBounded2) over all pixels against the teacher
    disparity. The teacher is a :class:`vitlab.core.EMATeacher` of the network (frozen, eval mode, updated
    once per optimizer step with ``ema_decay`` 0.999 [inferred]) fed the ``teacher_input`` views:
    ``"unmasked"`` (default) or ``"masked"`` (the student's masked views).

    Args:
        model: a :class:`BinocularViT` with ``hook_mode="decoder"``.
        mask_ratio, ema_decay, ema_schedule, disp_weight, rec_weight, pseudo_weight, pseudo_loss,
        teacher_input, norm_pix_loss: see above. **kwargs: :class:`StereoMatching` options.
    """

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
        **kwargs,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.save_hparams("model")
        _require_decoder_hooks(model, "MaDisStereo")
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

    @staticmethod
    def masked_forward(net: BinocularViT, left: Tensor, right: Tensor, masks) -> dict[str, Tensor]:
        """Student forward of ``MaDis_finetuning`` mode 1 with ``masks = ((mask_l, keep_l), (mask_r, keep_r))``."""
        (_, keep_l), (_, keep_r) = masks
        p = net.patch_size
        hw = (left.shape[-2] // p, left.shape[-1] // p)
        N = hw[0] * hw[1]
        enc_l, _, _ = net.encode(left, keep_l)
        enc_r, _, _ = net.encode(right, keep_r)
        l_full = _scatter_tokens(enc_l[-1], keep_l, N)
        r_full = _scatter_tokens(enc_r[-1], keep_r, N)
        dec_a = net.decode(enc_l[-1], r_full, hw, keep_l)
        dec_b = net.decode(enc_r[-1], l_full, hw, keep_r)
        return {"out": net.dense_head([None] * net.enc_depth + dec_a, left.shape[-2:]),
                "recon_l": net.reconstruct(dec_a[-1]), "recon_r": net.reconstruct(dec_b[-1])}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        left, right = batch["image"], batch["right"]
        B = left.shape[0]
        p = self.net.patch_size
        N = (left.shape[-2] // p) * (left.shape[-1] // p)
        masks = (random_token_mask(B, N, self.mask_ratio, left.device),
                 random_token_mask(B, N, self.mask_ratio, left.device))
        s = self.masked_forward(self.net, left, right, masks)
        with torch.no_grad():
            if self.teacher_input == "unmasked":
                t_disp = self.teacher(left, right)[:, :1]
            else:
                t_disp = self.masked_forward(self.teacher.teacher, left, right, masks)["out"][:, :1]
        l_disp = self.disparity_loss(s["out"], batch)
        l_rec = self.mse(s["recon_l"], patchify(left, p), masks[0][0]) + \
            self.mse(s["recon_r"], patchify(right, p), masks[1][0])
        if self.pseudo_loss == "l1":
            l_pd = (s["out"][:, :1] - t_disp).abs().mean()
        else:
            l_pd = self.pseudo_laplacian(s["out"], t_disp)
        wd, wr, wp = self.weights
        loss = wd * l_disp + wr * l_rec + wp * l_pd
        self.log_dict({"train/loss_disp": l_disp, "train/loss_rec": l_rec, "train/loss_pseudo": l_pd})
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.teacher.maybe_update(self.net, self.trainer.global_step)
