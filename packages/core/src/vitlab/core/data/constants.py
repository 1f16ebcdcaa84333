"""Constants shared by every data pipeline in vitlab."""

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Pixels without ground truth: +inf for continuous targets (disparity, depth), this id for labels.
IGNORE_INDEX = 255


def imagenet_normalize(batch, keys: tuple[str, ...] = ("image", "right")):
    """ImageNet-normalise the image ``keys`` of a dict batch on its own device.

    DataModules call this from ``on_after_batch_transfer`` so the work runs on the GPU. Floating images
    are taken in [0, 1]; uint8 images (0..255, what workers should send) become fp32 in the same pass. A
    ``{"source": ..., "target": ...}`` batch (domain adaptation) is normalised per sub-batch.
    """
    if isinstance(batch, dict) and set(batch) == {"source", "target"}:
        return {k: imagenet_normalize(v, keys) for k, v in batch.items()}
    if not isinstance(batch, dict):
        return batch
    out = dict(batch)
    for key in keys:
        x = out.get(key)
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            out[key] = normalize_image(x)
    return out


def normalize_image(x: "torch.Tensor") -> "torch.Tensor":
    """``(..., 3, H, W)`` float image in [0, 1] -> ImageNet-normalised, on its own device and dtype."""
    mean, std = _stats(x.device, x.dtype)
    shape = (1,) * (x.dim() - 3) + (3, 1, 1)
    return (x - mean.view(shape)) / std.view(shape)


def denormalize_image(x: "torch.Tensor") -> "torch.Tensor":
    """Inverse of :func:`normalize_image` (for pictures and for augmentations defined on [0, 1] images)."""
    mean, std = _stats(x.device, x.dtype)
    shape = (1,) * (x.dim() - 3) + (3, 1, 1)
    return x * std.view(shape) + mean.view(shape)


_STATS: dict = {}


def _stats(device, dtype):
    """ImageNet mean/std on ``device``, made once per (device, dtype): a per-step host-to-device copy otherwise."""
    import torch

    key = (str(device), dtype)
    if key not in _STATS:
        _STATS[key] = (torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype),
                       torch.tensor(IMAGENET_STD, device=device, dtype=dtype))
    return _STATS[key]
