"""Users' cases: a factory's case is checked like a registered one, and its own work model is used."""
import pytest
import torch

from kernels import Shape
from kernels.custom import CustomCaseError, load_case

EXAMPLE = "tests.kernels.custom_case_example"


def test_the_example_factory_gives_a_case_with_its_own_work_model():
    case = load_case(f"{EXAMPLE}:make_case")
    shape = Shape(batch_size=2, heads=4, kv_heads=2, head_dim=16, context_len=10)
    assert case.family == "custom" and case.phase == "decode"
    assert case.flops(shape) == 4.0 * 2 * 4 * 16 * 10 and case.tokens(shape) == 2
    out = case.build(shape, torch.device("cpu"), torch.float32, seed=0)()
    assert out.shape == (2, 4, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("target, says", [
    (None, "needs kernel.target"),
    ("no_colon", "needs kernel.target"),
    ("no.such.module:f", "cannot import"),
    (f"{EXAMPLE}:missing", "no function"),
    ("os:getcwd", "not a kernels.Case"),
    (f"{EXAMPLE}:make_prefill_named_like_a_builtin", "built-in case's name"),
    ("math:sqrt", "raised TypeError"),  # a factory that fails is reported, not raised through
])
def test_bad_targets_say_why(target, says):
    with pytest.raises(CustomCaseError, match=says):
        load_case(target)
