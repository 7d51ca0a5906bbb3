"""What the kernel tests share: the devices to run on, the error measure and its tolerances."""
import pytest
import torch

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere fails."""
    out64 = out.detach().to("cpu", torch.float64)
    assert torch.isfinite(out64).all(), "non-finite values in the output"
    return float((out64 - ref).norm() / ref.norm())


# Tolerances of the device library's METHOD.md: fp32 far under 1e-3, bf16/fp16 within 1e-2.
TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 1.5e-2}
