"""Source-only training and DACS / DAFormer / MIC mean-teacher self-training (LightningModules).

One iteration of :class:`DACS` follows ``lhoyer/DAFormer`` ``mmseg/models/uda/dacs.py`` in code order
(and ``lhoyer/MIC`` ``seg/mmseg/models/uda/{dacs.py,masking_consistency_module.py}`` for the MIC term):

1. EMA teacher update *before* the forward pass, ``alpha_t = min(1 - 1/(t+1), 0.999)`` with t the
   optimizer step (step 0 copies the student): :class:`~vitlab.uda.model.MeanTeacher`.
2. Source CE (mmseg mean over all pixels, ignored ones included), backpropagated at once (graph kept
   when the feature distance needs it).
3. ImageNet feature distance on "thing" classes, ``lambda_fd = 0.005``: L2 distance between the last
   encoder stage of the student and of a frozen copy of the initial encoder, on stride-32 cells whose
   label (majority >= 0.75 after downscaling) is a thing class. Nothing is downloaded: the frozen copy
   is the encoder as initialised, i.e. ImageNet weights when the backbone was given a checkpoint
   (``MiT(pretrained=...)``), else its random initialisation.
4. Pseudo-labels from the teacher on the target image; one quality weight for the whole batch (fraction of
   pixels with confidence >= 0.968); DAFormer's crop-PL zeroes the top 15 / bottom 120 rows.
5. ClassMix of source and target (``faithful``: classes drawn from the batch-wide ``unique`` incl. 255).
6. Strong augmentation of the mixed images (colour jitter p 0.8, Gaussian blur p 0.5; one pair of draws
   per call; per image: factors, op order and blur sigma, drawn on the device and applied batched).
7. Mixed loss weighted by 1 (source pixels) / quality (target pixels), backpropagated.
8. MIC (``mic=True``): the target image colour-augmented again (one op order and one blur sigma for the
   batch, as MIC's single ``strong_transform`` call; factors per image), 64-px patches masked with ratio 0.7, CE
   against the same pseudo-labels and weights, ``lambda_mic = 1``, backpropagated.
9. One optimizer step (AdamW 6e-5, head x10, poly schedule with mmcv linear warmup 1500 iterations).

Randomness of a step (ClassMix draws, augmentation, masks, dropout) comes from a seed derived from
``(rng_seed, global_step, rank)``, so a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from vitlab.core.ddp import all_reduce_gradients, local_backward
from vitlab.core.optim import make_adamw
from vitlab.core.tasks import VitlabModule
from vitlab.uda import transforms as T
from vitlab.uda.data import CLASS_NAMES, SYNTHIA13_CLASSES, SYNTHIA_CLASSES
from vitlab.uda.metrics import SubsetMeanIoU
from vitlab.uda.model import (
    FrozenEncoder,
    MeanTeacher,
    Segmentor,
    daformer_param_groups,
    poly_warmup,
    set_pseudo_label_mode,
)

__all__ = ["DACS", "SourceOnly", "UDASegmentation", "adamw_daformer"]

#: Cityscapes "thing" train ids used by DAFormer's feature distance
THING_CLASSES = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
EVAL_SUBSETS = {"cityscapes": {}, "synthia": {"mIoU16": SYNTHIA_CLASSES, "mIoU13": SYNTHIA13_CLASSES}}


def adamw_daformer(params) -> torch.optim.Optimizer:
    """DAFormer's optimizer: AdamW, betas (0.9, 0.999), eps 1e-8; lr and weight decay come from the groups.
    Core's :func:`~vitlab.core.optim.make_adamw`: the fused kernel wherever the device has it (no per-step
    host read of the step counters), the same update rule otherwise."""
    return make_adamw(params, betas=(0.9, 0.999))


class UDASegmentation(VitlabModule):
    """Shared machinery: the student network, target metrics, DAFormer's optimizer and schedule.

    Args:
        backbone: encoder (e.g. ``{class_path: vitlab.core.MiT, init_args: {size: b5, pretrained: mit_b5.pth}}``
            or core's ``vitlab.core.ViT``).
        num_classes: 19 for the Cityscapes label set.
        head, head_kwargs: decode head of :class:`~vitlab.uda.model.Segmentor`.
        eval_subsets: extra mIoU subsets on the target: ``"synthia"`` adds ``mIoU16`` and ``mIoU13``;
            ``"cityscapes"`` (or None) only the mean over all classes.
        class_names: names for per-class IoU logs (default: the 19 Cityscapes classes when num_classes is 19).
        optimizer: optimizer factory taking parameter groups (default AdamW betas (0.9, 0.999)).
        lr: base lr (6e-5); head_lr_mult: decode-head lr multiplier (10).
        weight_decay: 0.01 (0 for norm and pos_block parameters).
        warmup_steps, warmup_ratio: mmcv linear warmup (1500 iterations from 1e-6).
        poly_power, min_lr: poly schedule over the run's ``max_steps``.
        rng_seed: base of the per-step random seeds (named apart from the DataModule's ``seed``).
        compile, compile_options: regional ``torch.compile`` of the networks' blocks and heads, as every
            :class:`~vitlab.core.tasks.VitlabModule` (off by default).
    """

    default_writer = "vitlab.uda.writer.UDAPredictionWriter"

    def __init__(self, backbone: nn.Module, num_classes: int = 19, head: str = "daformer",
                 head_kwargs: dict[str, Any] | None = None, eval_subsets: str | None = None,
                 class_names: list[str] | None = None, optimizer: OptimizerCallable = adamw_daformer,
                 lr: float = 6e-5, head_lr_mult: float = 10.0, weight_decay: float = 0.01,
                 warmup_steps: int = 1500, warmup_ratio: float = 1e-6, poly_power: float = 1.0,
                 min_lr: float = 0.0, rng_seed: int = 0, compile: bool = False,
                 compile_options: dict[str, Any] | None = None) -> None:
        super().__init__(optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                         min_lr=min_lr, compile=compile, compile_options=compile_options)
        if eval_subsets is not None and eval_subsets not in EVAL_SUBSETS:
            raise ValueError(f"eval_subsets must be one of {sorted(EVAL_SUBSETS)} or None, got {eval_subsets!r}")
        self.automatic_optimization = False
        self.num_classes = num_classes
        self.model = Segmentor(backbone, num_classes, head, head_kwargs)
        self.head_lr_mult = head_lr_mult
        self.warmup_ratio = warmup_ratio
        self.poly_power = poly_power
        self.rng_seed = rng_seed
        names = class_names or (list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else None)
        subsets = EVAL_SUBSETS.get(eval_subsets or "cityscapes", {})
        self.val_iou = SubsetMeanIoU(num_classes, subsets, class_names=names, per_class=True)

    # -- helpers -------------------------------------------------------------------------------------
    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Train ids of the student (the network the target mIoU reports) for the writer."""
        logits = self(batch["image"])
        return {"semantic": logits.argmax(1), "probs": logits.softmax(1)}

    def step_seed(self) -> int:
        return (self.rng_seed * 1_000_003 + self.global_step) * 1009 + self.global_rank

    def seed_step(self) -> random.Random:
        """Seed torch's RNG for this step (dropout, kornia, masks) and return a Python RNG for draws."""
        s = self.step_seed()
        torch.manual_seed(s)
        return random.Random(s)

    def eval_models(self) -> dict[str, nn.Module]:
        """Networks evaluated on the target: name prefix -> model."""
        return {"": self.model}

    # -- optimisation -------------------------------------------------------------------------------
    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        """DAFormer's groups (10x head) plus :meth:`extra_param_groups`; a resumed run re-reads them."""
        groups = daformer_param_groups(self.model, self.lr, self.weight_decay, self.head_lr_mult, "head.")
        return groups + self.extra_param_groups()

    def configure_optimizers(self) -> dict[str, Any]:
        self.check_optimization_args(self.lr)
        optimizer = self.optimizer_factory(self.optimizer_param_groups())
        total = int(self.trainer.estimated_stepping_batches)
        fn = poly_warmup(total, self.warmup_steps, self.warmup_ratio, self.poly_power,
                         self.min_lr / self.lr if self.lr > 0 else 0.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, fn), "interval": "step"}}

    def extra_param_groups(self) -> list[dict[str, Any]]:
        return []

    def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward without DDP's reducer: a step's backward passes (CLDA's reach one network each) add up
        locally and :meth:`sync_gradients` averages them once per optimizer step (:mod:`vitlab.core.ddp`)."""
        with local_backward(self):
            super().manual_backward(loss, *args, **kwargs)

    def sync_gradients(self) -> None:
        """Average the gradients present over the DDP ranks (call before every optimizer step)."""
        all_reduce_gradients(self.parameters())

    def _optimizer_step(self, opt, sched) -> None:
        self.sync_gradients()
        opt.step()
        sched.step()

    # -- evaluation ----------------------------------------------------------------------------------
    def _make_metrics(self) -> None:
        """One :class:`SubsetMeanIoU` per evaluated network (call at the end of a subclass ``__init__``)."""
        self.ious = nn.ModuleDict({(k.rstrip("_") or "student"): self.val_iou.clone() for k in self.eval_models()})

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        image, target = batch["image"], batch["semantic"]
        for prefix, net in self.eval_models().items():
            logits = net(image)
            if logits.shape[-2:] != target.shape[-2:]:
                logits = nn.functional.interpolate(logits, size=target.shape[-2:], mode="bilinear",
                                                   align_corners=False)
            self.ious[prefix.rstrip("_") or "student"].update(logits.argmax(1), target)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def _log_iou(self, stage: str) -> None:
        for prefix in self.eval_models():
            metric = self.ious[prefix.rstrip("_") or "student"]
            values = metric.compute()
            for k, v in values.items():
                if torch.isfinite(v):  # classes absent from the evaluated set have no IoU (NaN): not logged
                    self.log(f"{stage}/{prefix}{k}", v, prog_bar=(k == "mIoU" and not prefix))
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_iou("val")

    def on_test_epoch_end(self) -> None:
        self._log_iou("test")

    # -- training ------------------------------------------------------------------------------------
    @staticmethod
    def split_batch(batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """(source image, source labels, target image) of a ``{"source", "target"}`` batch."""
        if not (isinstance(batch, dict) and "source" in batch and "target" in batch):
            raise ValueError("UDA training batches must be {'source': {...}, 'target': {...}} dicts; use "
                             "vitlab.uda.UDADataModule or SyntheticScenesDataModule(target_domain='target')")
        return batch["source"]["image"], batch["source"]["semantic"], batch["target"]["image"]


class SourceOnly(UDASegmentation):
    """Baseline: supervised CE on the source only (same network, optimizer and schedule as DAFormer).

    Args: see :class:`UDASegmentation`.
    """

    def __init__(self, backbone: nn.Module, **kwargs) -> None:
        super().__init__(backbone, **kwargs)
        self.save_hparams("backbone")
        self._make_metrics()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt, sched = self.optimizers(), self.lr_schedulers()
        self.seed_step()
        xs, ys, _ = self.split_batch(batch)
        opt.zero_grad()
        loss = T.ce_loss(self.model(xs), ys)
        self.manual_backward(loss)
        self._optimizer_step(opt, sched)
        self.log("train/loss_src", loss.detach(), prog_bar=True)


class DACS(UDASegmentation):
    """DACS / DAFormer self-training with an EMA teacher; MIC as an option (see the module docstring).

    Args:
        backbone, num_classes, head, head_kwargs, eval_subsets, class_names, optimizer, lr, head_lr_mult,
            weight_decay, warmup_steps, warmup_ratio, poly_power, min_lr, rng_seed, compile, compile_options:
            see :class:`UDASegmentation`.
        alpha: EMA teacher momentum (0.999 in DAFormer; 0.99 in the base DACS config).
        teacher_bn_train: teacher in train mode for BN with Dropout/DropPath off (DAFormer); False = eval mode.
        pseudo_threshold: confidence threshold of the quality weight (0.968).
        pl_crop_top, pl_crop_bottom: rows of the pseudo-label weight zeroed at the top/bottom (15/120 at a
            512 crop; 0/0 disables).
        mix: ClassMix on (DACS); False trains only on source (+FD, +MIC).
        faithful_classmix: batch-wide class ``unique`` including 255 (as the code); False = per image, no 255.
        color_jitter_p, color_jitter_s, blur: strong augmentation (0.2 -> applied with probability 0.8; 0.2;
            Gaussian blur on).
        jitter_law: colour-jitter operators (:func:`vitlab.uda.transforms.apply_strong`): ``"kornia_0.5"``
            (default: the kornia 0.5.8 ``ColorJitter`` the official DAFormer/MIC code pins) or ``"torchvision"``
            (today's kornia ``ColorJitter``).
        fd_lambda: ImageNet feature distance weight (0.005; 0 disables); fd_classes: classes it is applied on
            (Cityscapes things); fd_scale_min_ratio: label downscaling purity (0.75).
        mic: add MIC's masked-image consistency; mic_block_size (64), mic_ratio (0.7), mic_lambda (1.0).
        eval_teacher: also report the teacher's target mIoU (``val/teacher_mIoU``).
    """

    def __init__(self, backbone: nn.Module, alpha: float = 0.999, teacher_bn_train: bool = True,
                 pseudo_threshold: float = 0.968, pl_crop_top: int = 15, pl_crop_bottom: int = 120,
                 mix: bool = True, faithful_classmix: bool = True, color_jitter_p: float = 0.2,
                 color_jitter_s: float = 0.2, blur: bool = True, jitter_law: str = "kornia_0.5", fd_lambda: float = 0.005,
                 fd_classes: list[int] | None = None, fd_scale_min_ratio: float = 0.75, mic: bool = False,
                 mic_block_size: int = 64, mic_ratio: float = 0.7, mic_lambda: float = 1.0,
                 eval_teacher: bool = True, **kwargs) -> None:
        super().__init__(backbone, **kwargs)
        self.save_hparams("backbone", "student_backbone")  # subclasses' encoders are modules too
        self.alpha = alpha
        self.pseudo_threshold = pseudo_threshold
        self.pl_crop = (pl_crop_top, pl_crop_bottom)
        self.mix_enabled = mix
        self.faithful_classmix = faithful_classmix
        self.color_jitter = (color_jitter_p, color_jitter_s)
        self.blur = blur
        if jitter_law not in T.JITTER_LAWS:
            raise ValueError(f"DACS: jitter_law must be one of {T.JITTER_LAWS}, got {jitter_law!r}")
        self.jitter_law = jitter_law
        self.fd_lambda = fd_lambda
        self.fd_classes = list(THING_CLASSES if fd_classes is None else fd_classes)
        # on the module's device once: a tensor made from the list each step is a host-to-device copy
        self.register_buffer("fd_class_ids", torch.tensor(self.fd_classes, dtype=torch.long), persistent=False)
        self._log_values: dict[str, Tensor] = {}
        self.fd_scale_min_ratio = fd_scale_min_ratio
        self.mic = mic
        self.mic_args = (mic_block_size, mic_ratio, mic_lambda)
        self.eval_teacher = eval_teacher
        self.teacher = MeanTeacher(self.model, alpha=alpha, bn_train=teacher_bn_train)
        self.imnet = FrozenEncoder(self.model.backbone) if fd_lambda > 0 else None
        self._make_metrics()

    def eval_models(self) -> dict[str, nn.Module]:
        models: dict[str, nn.Module] = {"": self.model}
        if self.eval_teacher:
            models["teacher_"] = self.teacher.teacher
        return models

    # -- pieces ---------------------------------------------------------------------------------------
    def strong(self, images: Tensor, rng: random.Random, gen: torch.Generator | None = None,
               per_image: bool = True) -> Tensor:
        """Batched strong augmentation: one pair of jitter/blur draws for the call, per-image factors drawn on
        the device. ``per_image``: own op order and blur sigma per image (DACS's per-image loop); False: one
        order and one sigma for the batch (MIC's single call on the target batch)."""
        return T.strong_transform(images, *self.color_jitter, blur=self.blur, rng=rng, per_image=per_image,
                                  generator=gen, jitter_law=self.jitter_law)

    def feature_distance(self, feat: Tensor, image: Tensor, labels: Tensor,
                         imnet: FrozenEncoder | None = None) -> Tensor:
        """FD on thing classes against ``imnet`` (default: the frozen ImageNet copy of ``model``'s encoder)."""
        ref = (imnet or self.imnet)(image)[-1]
        scale = labels.shape[-1] // feat.shape[-1]
        down = T.downscale_label_ratio(labels, scale, self.fd_scale_min_ratio, self.num_classes)
        mask = (down[..., None] == self.fd_class_ids).any(-1)
        return self.fd_lambda * T.masked_feature_distance(feat, ref, mask)

    @torch.no_grad()
    def pseudo_labels(self, teacher: nn.Module, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Hard pseudo-labels, their pixel weights (quality, crop-PL applied) and the quality scalar map."""
        label, _, weight = T.pseudo_label(teacher(target), self.pseudo_threshold)
        return label, T.crop_pseudo_weight(weight, *self.pl_crop), weight

    def self_training_losses(self, model: nn.Module, xs: Tensor, ys: Tensor, xt: Tensor, pl: Tensor,
                             pw: Tensor, rng: random.Random, gen: torch.Generator | None, prefix: str = ""
                             ) -> dict[str, Tensor]:
        """Steps 5-8 for ``model``: ClassMix loss and the MIC loss, each backpropagated; returns detached logs."""
        logs: dict[str, Tensor] = {}
        if self.mix_enabled:
            masks = T.class_mix_masks(ys, self.num_classes, self.faithful_classmix, generator=gen)
            x_mix = self.strong(T.mix(masks, xs, xt), rng, gen)
            y_mix = T.mix(masks, ys, pl)
            w_mix = T.mix(masks, torch.ones_like(pw), pw)
            loss_mix = T.ce_loss(model(x_mix), y_mix, w_mix)
            self.manual_backward(loss_mix)
            logs[f"{prefix}loss_mix"] = loss_mix.detach()
        if self.mic:
            block, ratio, lam = self.mic_args
            x_aug = self.strong(xt, rng, gen, per_image=False)
            keep = T.mic_mask(tuple(xt.shape), block, ratio, device=xt.device, generator=gen)
            loss_mic = lam * T.ce_loss(model(x_aug * keep), pl, pw)
            self.manual_backward(loss_mic)
            logs[f"{prefix}loss_mic"] = loss_mic.detach()
        return logs

    def source_losses(self, model: nn.Module, xs: Tensor, ys: Tensor, prefix: str = "",
                      imnet: FrozenEncoder | None = None) -> dict[str, Tensor]:
        """Steps 2-3: source CE and (if on) the ImageNet feature distance, each backpropagated."""
        feats = model.extract(xs)
        loss_src = T.ce_loss(model.decode(feats, xs.shape[-2:]), ys)
        fd = imnet is not None
        self.manual_backward(loss_src, retain_graph=fd)
        logs = {f"{prefix}loss_src": loss_src.detach()}
        if fd:
            loss_fd = self.feature_distance(feats[-1], xs, ys, imnet)
            self.manual_backward(loss_fd)
            logs[f"{prefix}loss_fd"] = loss_fd.detach()
        return logs

    def log_value(self, key: str, value: float) -> Tensor:
        """A Python number to log, as a 0-dim device tensor kept per key and filled in place (``log`` copies it):
        ``torch.tensor(value)`` each step would be a blocking host-to-device copy on a GPU."""
        t = self._log_values.get(key)
        if t is None or t.device != self.device:
            t = self._log_values[key] = torch.zeros((), device=self.device)
        return t.fill_(value)

    def _generator(self, device: torch.device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(self.step_seed())

    # -- one iteration --------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt, sched = self.optimizers(), self.lr_schedulers()
        rng = self.seed_step()
        gen = self._generator(self.device)
        xs, ys, xt = self.split_batch(batch)
        alpha = self.teacher.step(self.model, self.global_step)
        set_pseudo_label_mode(self.teacher.teacher, self.teacher.bn_train)
        opt.zero_grad()
        logs = self.source_losses(self.model, xs, ys, imnet=self.imnet)
        pl, pw, q = self.pseudo_labels(self.teacher.teacher, xt)
        logs.update(self.self_training_losses(self.model, xs, ys, xt, pl, pw, rng, gen))
        self._optimizer_step(opt, sched)
        logs["pseudo_quality"] = q.mean()
        if alpha is not None:
            logs["ema_alpha"] = self.log_value("ema_alpha", alpha)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False)
