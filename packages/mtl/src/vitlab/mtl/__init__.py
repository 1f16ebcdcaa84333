"""vitlab.mtl — Multi-task dense scene understanding: multi-task data, heads and metrics (Δm), sequential cross attention (CTAM/CSAM), MTLoRA and TADFormer.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

__version__ = "0.1.0"
