"""The UDA modules through the CLI: the common VitlabModule arguments (compile, compile_options) are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitlab.core.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "uda"


@pytest.mark.parametrize("config", ["quickstart.yaml", "quickstart_clda.yaml"])
def test_compile_is_accepted(config, capsys):
    """``--model.init_args.compile true`` (and its options) parse for DACS (SourceOnly and MIC share its
    signature) and CLDA (printing the config
    instantiates nothing)."""
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(CONFIGS / config), "--model.init_args.compile", "true",
              "--model.init_args.compile_options", "{mode: max-autotune-no-cudagraphs}", "--print_config"])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "compile: true" in out and "mode: max-autotune-no-cudagraphs" in out


def test_compile_reaches_the_module():
    """The parsed flag is the one the module's ``configure_model`` acts on (the common base's attribute)."""
    from vitlab.core import MiT
    from vitlab.uda import DACS

    enc = MiT("b0", embed_dims=(8, 16, 32, 32), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 4))
    m = DACS(enc, num_classes=3, head_kwargs={"embed_dim": 8}, compile=True, compile_options={"dynamic": False})
    assert m.compile_model is True and m.compile_options == {"dynamic": False}
    assert m.hparams["compile"] is True


def test_optimizer_is_cores_fused_adamw():
    """DAFormer's AdamW comes from core's factory: fused where the device has the kernel (CPU and CUDA here)."""
    import torch

    from vitlab.uda.dacs import adamw_daformer

    opt = adamw_daformer([{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 6e-5, "weight_decay": 0.01}])
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    assert opt.defaults["betas"] == (0.9, 0.999)
