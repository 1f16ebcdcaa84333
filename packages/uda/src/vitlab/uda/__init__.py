"""vitlab.uda — Unsupervised domain adaptation for semantic segmentation: DAFormer-style mean-teacher self-training and CLDA collaborative teacher-student.

Installing this distribution registers it in the `vitlab.plugins` entry-point group, so the
`vitlab` CLI resolves its classes by short name.
"""

__version__ = "0.1.0"
