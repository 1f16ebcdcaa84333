"""MTLoRA against the official code (``tests/data/golden/mtlora``, scale-lab/MTLoRA@333a375): one ``MTLoRALinear``
(shared and task paths, eval and train with dropout p = 1), the per-stage task features and decoder outputs of a
tiny MTLoRA and MTLoRA+ with stored weights, and the official trainable-parameter counts.

Official names map onto vitlab's by the rules of ``_golden.to_vitlab`` (``linear.weight`` -> ``weight``,
``lora_shared_A`` -> ``lora_A``, ``lora_tasks_A.<t>`` -> ``task_A.<t>``; a stage's PatchMerging moves to the
start of the next timm stage)."""

import pytest
import torch

from vitlab.core import Swin
from vitlab.mtl import MTLoRA, MTLoRALinear

from ._golden import assert_close, check_forward, load, unpack

GOLD = load("mtlora")
DATA = GOLD["data"]
LINEAR = {"linear.weight": "weight", "linear.bias": "bias", "lora_shared_A": "lora_A", "lora_shared_B": "lora_B"}


def official_linear() -> MTLoRALinear:
    lin = DATA["linear"]
    x = lin["x"]
    m = MTLoRALinear(x.shape[-1], lin["state"]["linear.weight"].shape[0], lin["rank"], lin["scale"], lin["tasks"],
                     lin["task_rank"], lin["scale"], dropout=1.0)
    state = {}
    for k, v in lin["state"].items():
        for t in lin["tasks"]:
            k = k.replace(f"lora_tasks_A.{t}", f"task_A.{t}").replace(f"lora_tasks_B.{t}", f"task_B.{t}")
        state[LINEAR.get(k, k)] = v
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not unexpected and missing == ["lora_merged"], (missing, unexpected)
    return m


@pytest.mark.parametrize("case", ["eval", "eval_task_inputs", "train_p1", "train_p1_task_inputs"])
def test_linear_equals_official(case):
    """Train mode with p = 1 shows which paths see the dropped input: the shared LoRA always, a task path only
    when it has no input of its own (proj in the official block)."""
    lin = DATA["linear"]
    m = official_linear().train(case.startswith("train"))
    with torch.no_grad():
        shared, tasks = m.forward_tasks(lin["x"], lin["x_tasks"] if case.endswith("task_inputs") else None)
        assert torch.equal(m(lin["x"]), shared)
    ref = lin[case]
    assert_close(shared, ref["shared"], f"{case} shared")
    for t in lin["tasks"]:
        assert_close(tasks[t], ref["tasks"][t], f"{case} task {t}")


def build(plus: bool) -> MTLoRA:
    sw = DATA["swin"]
    swin = Swin(img_size=sw["img_size"], window_size=sw["window_size"], embed_dim=sw["embed_dim"],
                depths=sw["depths"], num_heads=sw["num_heads"], drop_path_rate=0.0)
    return MTLoRA(swin, DATA["tasks"], rank=DATA["rank"], task_rank=DATA["task_rank"], mtlora_plus=plus,
                  num_outputs=DATA["num_outputs"], head_widths=[4] * 4)


@pytest.mark.parametrize("variant", ["model", "plus"])
def test_forward_equals_official(variant):
    model = build(variant == "plus").eval()
    state = unpack(DATA["cases"]["model"]["state"])
    if variant == "plus":  # the model case's weights (its reduction.weight is MTLoRA+'s reduction.linear.weight) + LoRA
        state |= unpack(DATA["cases"]["plus"]["reduction_lora"])
    check_forward(model, state, DATA, DATA["cases"][variant], variant)


def test_plus_differs_on_these_weights():
    """The reduction LoRA moves the features by far more than the tolerance (guards the golden file itself)."""
    a, b = DATA["cases"]["model"]["features"], DATA["cases"]["plus"]["features"]
    assert max((x - y).abs().max().item() for t in a for x, y in zip(a[t][1:], b[t][1:])) > 1e-2


@pytest.mark.parametrize("rank,plus", [(16, False), (32, False), (64, False), (16, True)])
def test_parameter_counts_equal_official(rank, plus):
    with torch.device("meta"):
        model = MTLoRA(Swin(img_size=448), ["semseg", "human_parts", "sal", "normals"], rank=rank, mtlora_plus=plus)
    mine = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert mine == DATA["counts"][f"{'plus' if plus else 'mtlora'}_r{rank}"]
