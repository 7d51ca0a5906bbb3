import pytest
import torch

from kernels import REGISTRY, Case, Registry, Shape
from kernels.cases import build_decode, build_prefill
from kernels.registry import causal_pairs


def test_registry_refuses_duplicates_and_names_choices():
    reg = Registry([Case("a.x", "prefill", "torch", build_prefill)])
    with pytest.raises(ValueError, match="already registered"):
        reg.register(Case("a.x", "decode", "torch", build_decode))
    with pytest.raises(ValueError, match="phase"):
        reg.register(Case("b", "train", "torch", build_prefill))
    with pytest.raises(KeyError, match="a.x"):
        reg.get("nope")


def test_registry_holds_prefill_and_decode_cases():
    phases = {case.phase for case in REGISTRY}
    assert phases == {"prefill", "decode"}
    assert any(case.paged for case in REGISTRY)


@pytest.mark.parametrize("n,m", [(1, 1), (5, 5), (3, 8), (7, 7), (1, 9)])
def test_causal_pairs_counts_the_mask(n, m):
    rows, cols = torch.arange(n)[:, None], torch.arange(m)[None, :]
    assert causal_pairs(n, m) == int((cols <= rows + (m - n)).sum())


def test_flops_bytes_tokens_by_hand():
    shape = Shape(batch_size=2, heads=8, kv_heads=2, head_dim=64, seq_len=10, context_len=100, causal=False, page_size=16)
    prefill, decode, paged = REGISTRY.get("prefill.torch"), REGISTRY.get("decode.torch"), REGISTRY.get("decode.torch_paged")
    assert prefill.flops(shape) == 4 * 2 * 8 * 64 * 10 * 10
    assert prefill.tokens(shape) == 20
    # q and o: 2*8*10*64 each; k and v: 2*2*10*64 each; 2 bytes in bf16
    assert prefill.min_bytes(shape, torch.bfloat16) == 2 * (2 * 2 * 8 * 10 * 64 + 2 * 2 * 2 * 10 * 64)
    causal = Shape(2, 8, 2, 64, seq_len=10, causal=True)
    assert prefill.flops(causal) == 4 * 2 * 8 * 64 * 55
    assert decode.flops(shape) == 4 * 2 * 8 * 64 * 100
    assert decode.tokens(shape) == 2
    kv = 2 * 2 * 2 * 100 * 64 * 4
    assert decode.min_bytes(shape, torch.float32) == kv + 2 * 2 * 8 * 64 * 4 + 2 * 4
    assert paged.min_bytes(shape, torch.float32) == kv + 2 * 2 * 8 * 64 * 4 + 2 * 4 + 2 * 7 * 4


def test_shape_fields_identify_only_what_the_case_uses():
    shape = Shape(1, 4, 2, 64, seq_len=3, context_len=9)
    assert "context_len" not in REGISTRY.get("prefill.torch").shape_fields(shape)
    assert "seq_len" not in REGISTRY.get("decode.torch").shape_fields(shape)
    assert "page_size" in REGISTRY.get("decode.torch_paged").shape_fields(shape)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_case_builds_a_closure_that_runs(name):
    case = REGISTRY.get(name)
    reason = case.unsupported_reason(torch.device("cpu"))
    if reason:
        pytest.skip(reason)
    fn = case.build(Shape(2, 4, 2, 64, seq_len=9, context_len=21, page_size=8), torch.device("cpu"), torch.float32, seed=1)
    out = fn()
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0  # random inputs, so an all-zero output means nothing was written


@pytest.mark.parametrize("name", ["decode.offload_cpu", "decode.offload_split_torch", "decode.offload_stream_torch"])
@pytest.mark.parametrize("fraction", [0.0, 0.4, 1.0])
def test_offload_cases_compute_what_the_plain_decode_case_computes(name, fraction):
    shape = Shape(3, 4, 2, 64, context_len=19, offload_fraction=fraction, offload_threads=1, offload_chunks=2)
    cpu = torch.device("cpu")
    plain = REGISTRY.get("decode.torch").build(shape, cpu, torch.float32, seed=7)()
    offloaded = REGISTRY.get(name).build(shape, cpu, torch.float32, seed=7)()
    assert torch.allclose(offloaded, plain, atol=1e-5)


def test_offload_case_names_and_refusals():
    from kernels.cases import offload_case

    assert offload_case("decode.triton", "none") == "decode.triton"
    assert offload_case("decode.triton", "cpu") == offload_case("decode.torch", "cpu") == "decode.offload_cpu"
    assert offload_case("decode.triton", "split") == "decode.offload_split"
    assert offload_case("decode.torch", "stream") == "decode.offload_stream_torch"
    for kernel in ("prefill.torch", "decode.torch_paged"):
        with pytest.raises(ValueError, match="contiguous decode"):
            offload_case(kernel, "split")
    shape = Shape(1, 2, 1, 64)
    assert "offload_fraction" in REGISTRY.get("decode.offload_split").shape_fields(shape)
    assert "offload_fraction" not in REGISTRY.get("decode.offload_stream").shape_fields(shape)
    assert "offload_fraction" not in REGISTRY.get("decode.torch").shape_fields(shape)


def test_cases_say_why_they_cannot_run(monkeypatch):
    assert "cuda" in REGISTRY.get("prefill.torch_cudnn").unsupported_reason(torch.device("cpu"))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "TRITON_INTERPRET" in REGISTRY.get("decode.triton").unsupported_reason(torch.device("cpu"))
    assert REGISTRY.get("decode.torch").unsupported_reason(torch.device("cpu")) is None


def test_tma_cases_name_why_an_older_gpu_cannot_run_them(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    for name in ("prefill.triton_tma", "decode.triton_tma"):
        reason = REGISTRY.get(name).unsupported_reason(torch.device("cuda"))
        assert reason and "9.0" in reason and "A100" in reason and "8.0" in reason
    assert REGISTRY.get("prefill.triton").unsupported_reason(torch.device("cuda")) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    assert REGISTRY.get("decode.triton_tma").unsupported_reason(torch.device("cuda")) is None
