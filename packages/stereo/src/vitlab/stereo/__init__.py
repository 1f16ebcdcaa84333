"""vitlab.stereo — Transformer stereo matching: the CroCo-Stereo binocular ViT, UniTT-Stereo and MaDis-Stereo, stereo datasets, tiled inference and stereo metrics.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

__version__ = "0.1.0"
