"""vitlab.pretrain — Masked-image-modeling pre-training for ViTs: MAE, SimMIM, salience-based adaptive masking (SBAM/AMR), masked-token optimization (MTO), structured-knowledge-guided MIM (SG-MIM) and noise-in-encoder corruption/restoration.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

__version__ = "0.1.0"
