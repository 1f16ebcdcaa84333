"""vitlab.peft — parameter-efficient transfer for the vitlab ViT.

Tuners (:class:`vitlab.core.Tuner`) plug into every core task module via its ``tuner`` argument:
``tuner: {class_path: LoRA, init_args: {rank: 8}}``. Each freezes the backbone, adds its own trainable
modules and reports counts with ``trainable_parameters(backbone)``.

* :class:`LinearProbe`, :class:`FullFineTune`, :class:`BitFit` — choose what trains.
* :class:`LoRA` — low-rank updates on qkv / proj / fc1 / fc2, mergeable.
* :class:`Adapter` (Houlsby, sequential) and :class:`AdaptFormer` (parallel to the MLP).
* :class:`VPT` — shallow or deep visual prompts, kept as prefix tokens.
* :class:`iConFormer` — input-conditioned dynamic adapters (iCoN kernels + depthwise convolution).
* :func:`save_trainable` / :func:`load_trainable` / :class:`SaveTrainable` — small tuner checkpoints.

Installing this distribution registers it in the ``vitlab.plugins`` entry-point group, so the ``vitlab``
CLI resolves these classes by short name.
"""

from vitlab.peft.adapters import Adapter, AdaptFormer, BottleneckAdapter
from vitlab.peft.base import BitFit, FullFineTune, LinearProbe, PeftTuner
from vitlab.peft.checkpoint import (
    SaveTrainable,
    load_trainable,
    read_trainable,
    save_trainable,
    trainable_state_dict,
    tuner_from_config,
)
from vitlab.peft.iconformer import DynamicAdapter, FilterNorm, ICoN, dynamic_depthwise_conv, iConFormer
from vitlab.peft.lora import LoRA, LoRALinear
from vitlab.peft.vpt import VPT

__version__ = "0.1.0"

__all__ = [
    "AdaptFormer",
    "Adapter",
    "BitFit",
    "BottleneckAdapter",
    "DynamicAdapter",
    "FilterNorm",
    "FullFineTune",
    "ICoN",
    "LinearProbe",
    "LoRA",
    "LoRALinear",
    "PeftTuner",
    "SaveTrainable",
    "VPT",
    "dynamic_depthwise_conv",
    "iConFormer",
    "load_trainable",
    "read_trainable",
    "save_trainable",
    "trainable_state_dict",
    "tuner_from_config",
]
