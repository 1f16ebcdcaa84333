"""A state dict stored as one float16 vector plus names and shapes (one tensor keeps a golden file small).

Shared by the regeneration scripts (``pack_state``) and the tests that read their files (``unpack_state``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: buffers rebuilt from the configuration on both sides: never stored
SKIPPED = ("relative_position_index", "attn_mask", "num_batches_tracked")


def pack_state(module: torch.nn.Module, keep: Callable[[str], bool] = lambda k: True) -> dict:
    items = [(k, v) for k, v in module.state_dict().items() if keep(k) and not k.endswith(SKIPPED)]
    return {"names": [k for k, _ in items], "shapes": [tuple(v.shape) for _, v in items],
            "flat": torch.cat([v.reshape(-1) for _, v in items]).half()}


def unpack_state(packed: dict) -> dict[str, torch.Tensor]:
    """→ float32 tensors by name."""
    out, i = {}, 0
    for k, shape in zip(packed["names"], packed["shapes"]):
        n = torch.Size(shape).numel()
        out[k] = packed["flat"][i:i + n].float().view(shape)
        i += n
    return out
