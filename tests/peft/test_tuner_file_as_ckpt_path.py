"""A tuner file (trainable tensors only) given as ``--ckpt_path`` is named, with how to load it instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitlab.core.cli import main
from vitlab.peft import LoRA, save_trainable

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "core" / "quickstart.yaml"
TINY = [
    "--trainer.accelerator", "cpu", "--model.init_args.backbone.init_args.embed_dim", "32",
    "--model.init_args.backbone.init_args.depth", "2", "--model.init_args.backbone.init_args.num_heads", "2",
    "--model.init_args.backbone.init_args.img_size", "32", "--data.init_args.size", "32",
    "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0", "--data.init_args.train_samples", "8",
    "--data.init_args.val_samples", "4", "--trainer.max_steps", "1",
]


@pytest.mark.parametrize("sub", ["fit", "validate"])
def test_a_tuner_file_as_ckpt_path_is_one_line_with_how_to_load_it(sub, make_vit, tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("VITLAB_RUN_DIR", raising=False)
    monkeypatch.delenv("VITLAB_DEBUG", raising=False)
    tuner = save_trainable(LoRA(rank=2).apply(make_vit()), tmp_path / "tuner.pt")
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([sub, "--config", str(QUICKSTART), *TINY, "--trainer.default_root_dir", str(tmp_path / "runs"),
              "--ckpt_path", str(tuner)])
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert exit_info.value.code == 1
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"vitlab: checkpoint {tuner} is a tuner file"), lines
    assert "vitlab.peft.load_trainable" in lines[1], lines
