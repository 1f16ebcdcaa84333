"""Helpers of the mtl golden tests: load a stored ``.pt`` and map official MTLoRA/TADFormer state-dict names onto
vitlab's (official Swin merges patches at the end of a stage, timm at the start of the next one)."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _packing():
    """``tests/data/golden/_packing.py``, the one reader of the packed state dicts the scripts write."""
    spec = importlib.util.spec_from_file_location("_golden_packing", GOLDEN / "_packing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unpack = _packing().unpack_state


def load(name: str) -> dict:
    path = GOLDEN / name / f"{name}.pt"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run tests/data/golden/{name}/regenerate.py")
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_close(mine: torch.Tensor, ref: torch.Tensor, msg: str) -> None:
    """float32 on both sides with identical float16-rounded weights; only the summation order differs, so the
    bound is 1e-5 relative to the tensor's scale (1e-5 absolute for values of order one; the last Swin stage of
    random weights reaches ~70)."""
    err, scale = (mine - ref).abs().max().item(), ref.abs().max().item()
    assert err <= 1e-5 * (scale + 1), f"{msg}: max abs diff {err:.3g} at scale {scale:.3g}"


def check_forward(model: torch.nn.Module, state: dict[str, torch.Tensor], data: dict, case: dict, label: str) -> None:
    """Load the official ``state`` into ``model`` (eval) and compare every task's per-stage features and decoder
    outputs (every 4th pixel) on ``data["image"]`` with the official ``case``."""
    missing, unexpected = model.load_state_dict(to_vitlab(state, model), strict=False)
    assert not unexpected and all(k.endswith(("lora_merged", "num_batches_tracked")) for k in missing), missing
    image = data["image"].float()
    with torch.no_grad():
        feats = model.encode(image)
        outs = model(image)
    for t in data["tasks"]:
        for s, (mine, ref) in enumerate(zip(feats[t], case["features"][t])):
            mine = mine.flatten(2).transpose(1, 2)  # official (B, h·w, C)
            assert_close(mine, ref, f"{label} {t} features, stage {s}")
        assert_close(outs[t][..., ::4, ::4], case["outputs"][t], f"{label} {t} outputs")


_RULES = [
    (r"^backbone\.task_prompts$", "backbone.task_prompts"),
    (r"^backbone\.layers\.(\d)\.downsample\.task_prompts_up\.weight$", r"backbone.task_prompts_up.\1.weight"),
    (r"^backbone\.layers\.(\d)\.downsample\.reduction\.lora_shared_([AB])$",
     lambda m: f"backbone.swin.layers.{int(m[1]) + 1}.downsample.reduction.lora_{m[2]}"),
    (r"^backbone\.layers\.(\d)\.downsample\.(norm|reduction)\.(?:linear\.)?(weight|bias)$",
     lambda m: f"backbone.swin.layers.{int(m[1]) + 1}.downsample.{m[2]}.{m[3]}"),
    (r"^backbone\.(.*)\.linear\.(weight|bias)$", r"backbone.swin.\1.\2"),
    (r"^backbone\.(.*)\.lora_shared_([AB])$", r"backbone.swin.\1.lora_\2"),
    (r"^backbone\.(.*)\.lora_tasks_([AB])\.(\w+)$", r"backbone.swin.\1.task_\2.\3"),
    (r"^backbone\.(.*)\.lora_filter\.m\.conv\.(weight|bias)$", r"backbone.swin.\1.dtf.fc.\2"),
    (r"^backbone\.(.*)\.lora_filter\.m\.chan_FilterNorm\.(std|mean)$", r"backbone.swin.\1.dtf.norm.\2"),
    (r"^backbone\.(.*)\.lora_filter\.(\w+)\.conv2d\.(weight|bias)$", r"backbone.swin.\1.static.\2.\3"),
    (r"^backbone\.(patch_embed|layers)\.(.*)$", r"backbone.swin.\1.\2"),
    (r"^downsampler\.(\w+)\.downsample_(\d)\.weight$", r"decoders.\1.downsampler.convs.\2.weight"),
    (r"^decoders\.decoders\.(\w+)\.last_layer\.([01])\.(.*)$", r"decoders.\1.head.fuse.\2.\3"),
    (r"^decoders\.decoders\.(\w+)\.last_layer\.3\.(.*)$", r"decoders.\1.head.classifier.\2"),
]


def to_vitlab(official: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Official MultiTaskSwin state → ``model``'s state (shapes adapted; every parameter of ``model`` must be
    covered). TADFormer: the ``prompt_layernorm`` of a task-adapting block becomes that stage's ``tpc_norms``;
    the unused ones of the other blocks are dropped; the stage gates gather into ``prompt_gates``."""
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    gates = {}
    for k, v in official.items():
        m = re.match(r"^backbone\.layers\.(\d)\.prompt_gate$", k)
        if m:
            gates[int(m[1])] = v.reshape(())
            continue
        m = re.match(r"^backbone\.layers\.(\d)\.blocks\.(\d+)\.attn\.proj\.prompt_layernorm\.(weight|bias)$", k)
        if m:
            s, i = int(m[1]), int(m[2])
            if i == len(model.backbone.swin.stage_blocks(s)) - 1:
                out[f"backbone.tpc_norms.{s}.{m[3]}"] = v
            continue
        for pat, rep in _RULES:
            if re.match(pat, k):
                new = re.sub(pat, rep, k)
                break
        else:
            raise KeyError(f"no vitlab name for official key {k}")
        if new not in target:
            raise KeyError(f"official {k} -> {new}, which the vitlab model lacks")
        out[new] = v.reshape(target[new].shape)
    if gates:
        out["backbone.prompt_gates"] = torch.stack([gates[s] for s in range(4)])
    missing = [k for k, p in model.named_parameters() if k not in out]
    if missing:
        raise KeyError(f"vitlab parameters without an official value: {missing[:6]}")
    return out
