"""vitlab.peft — Parameter-efficient transfer for the vitlab ViT: linear probe, full fine-tune, BitFit, LoRA, adapters/AdaptFormer, VPT and iConFormer. Tuners plug into every vitlab.core task module via its `tuner` argument.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

__version__ = "0.1.0"
