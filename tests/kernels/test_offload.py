"""CPU-offload decode against the float64 reference. On a CPU-only machine the "device" is the
host, so the same split, stream and merge code runs as on a GPU (tests marked gpu cover the
transfers across PCIe)."""
import pytest
import torch

import kernels
from kernels.offload import cpu_threads, host_share, merge_lse, split_cache
from tests.tensors import DEVICES, TOL, rel_err
from tests.kernels.reference import decode_ref
from tests.kernels.test_attention import decode_inputs, dtype_for

SEQ_LENS = [1, 37, 64, 50]  # a 1-token request, lengths that are and are not block multiples


def poison_tail(k, v, seq_lens):
    """Cache slots past each request's length hold values far outside real activations."""
    for r, n in enumerate(seq_lens):
        k[r, :, n:] = 50.0
        v[r, :, n:] = -50.0


def host(t):
    return t.cpu().pin_memory() if t.is_cuda else t.clone()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("group", [1, 2, 4, 8])
@pytest.mark.parametrize("d", [64, 128])
def test_offload_cpu_matches_reference(device, group, d, poisoned_outputs):
    dtype = dtype_for(device)
    q, k, v, lens = decode_inputs(4, 2 * group, 2, 64, d, SEQ_LENS, device, dtype, seed=group + d)
    poison_tail(k, v, SEQ_LENS)
    out = kernels.decode(q, host(k), host(v), lens, impl="offload_cpu", threads=2)
    assert out.device == q.device and out.dtype == dtype and out.shape == q.shape
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("device_impl", ["torch", "triton"])
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_offload_split_matches_reference_for_any_fraction(device, device_impl, fraction, poisoned_outputs):
    dtype = dtype_for(device)
    q, k, v, lens = decode_inputs(4, 8, 2, 64, 64, SEQ_LENS, device, dtype, seed=int(fraction * 10))
    poison_tail(k, v, SEQ_LENS)
    parts = split_cache(k, v, lens, fraction)
    assert parts.host_k.device.type == "cpu" and parts.device_k.device == k.device
    out = kernels.decode(q, parts.device_k, parts.device_v, parts.device_lens, impl="offload_split",
                         host_k_cache=parts.host_k, host_v_cache=parts.host_v, host_seq_lens=parts.host_lens,
                         threads=1, device_impl=device_impl)
    assert out.shape == q.shape and out.dtype == dtype
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[dtype]


def test_split_cache_places_the_oldest_tokens_on_the_host():
    k, v = torch.randn(3, 2, 10, 4), torch.randn(3, 2, 10, 4)
    lens = torch.tensor([10, 1, 7], dtype=torch.int32)
    parts = split_cache(k, v, lens, 0.5)
    assert parts.host_lens.tolist() == [5, 0, 4]  # round(0.5 x 7) = 4 (half to even)
    assert parts.device_lens.tolist() == [5, 1, 3]
    assert torch.equal(parts.host_k[0, :, :5], k[0, :, :5])
    assert torch.equal(parts.device_k[0, :, :5], k[0, :, 5:10])
    assert torch.equal(parts.device_v[1, :, :1], v[1, :, :1])
    assert torch.equal(parts.host_v[2, :, :4], v[2, :, :4]) and torch.equal(parts.device_v[2, :, :3], v[2, :, 4:7])


def test_host_share_edges():
    lens = torch.tensor([1, 2, 9], dtype=torch.int32)
    assert host_share(lens, 0.0).tolist() == [0, 0, 0]
    assert host_share(lens, 1.0).tolist() == [1, 2, 9]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        host_share(lens, 1.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("device_impl", ["torch", "triton"])
@pytest.mark.parametrize("chunks", [1, 3, 8])
def test_offload_stream_matches_reference(device, device_impl, chunks, poisoned_outputs):
    dtype = dtype_for(device)
    q, k, v, lens = decode_inputs(4, 8, 2, 64, 64, SEQ_LENS, device, dtype, seed=chunks)
    poison_tail(k, v, SEQ_LENS)
    out = kernels.decode(q, host(k), host(v), lens, impl="offload_stream", chunks=chunks, device_impl=device_impl)
    assert out.device == q.device and out.shape == q.shape
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[dtype]


def test_merge_of_any_key_partition_equals_attention_over_all_keys():
    from kernels.offload import attention_lse_torch

    gen = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in [(2, 4, 8), (2, 2, 30, 8), (2, 2, 30, 8)])
    full_lens = torch.tensor([30, 30])
    o_all, lse_all = attention_lse_torch(q, k, v, full_lens, None)
    cuts = [0, 7, 7, 19, 30]  # includes an empty part
    parts = [attention_lse_torch(q, k[:, :, a:b], v[:, :, a:b], torch.tensor([b - a] * 2), None)
             if b > a else (torch.full_like(o_all, float("nan")), torch.full_like(lse_all, float("-inf")))
             for a, b in zip(cuts, cuts[1:])]
    o, lse = merge_lse(parts)
    assert torch.isfinite(o).all()
    assert torch.allclose(o.double(), o_all.double(), atol=1e-6)
    assert torch.allclose(lse.double(), lse_all.double(), atol=1e-6)


def test_cpu_threads_is_restored():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def _cache(b=2, hkv=2, n=5, d=8, device="cpu"):
    return torch.randn(b, hkv, n, d, device=device)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.decode(torch.randn(2, 4, 8), _cache(), _cache(), torch.tensor([5, 5]), impl="offload_split"),
         "host_k_cache"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), _cache(), _cache(), torch.tensor([5, 5]), impl="offload_stream",
                                chunks=0), "chunks"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), _cache(), _cache(), torch.tensor([5, 5]), impl="offload_stream",
                                device_impl="cuda"), "device_impl"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), _cache(device="meta"), _cache(device="meta"), torch.tensor([5, 5]),
                                impl="offload_cpu"), "host memory"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(4, 4, 2, 8), torch.randn(4, 4, 2, 8), torch.tensor([5, 5]),
                                block_table=torch.zeros(2, 2, dtype=torch.int32), impl="offload_cpu"), "contiguous"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), _cache(), _cache(), torch.tensor([3, 3]), impl="offload_split",
                                host_k_cache=_cache(hkv=1), host_v_cache=_cache(hkv=1), host_seq_lens=torch.tensor([2, 2])),
         "must match"),
    ],
)
def test_bad_offload_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.gpu
def test_offload_cpu_with_a_gpu_query_needs_the_cache_on_the_host():
    q, k, v, lens = decode_inputs(2, 4, 2, 16, 64, [16, 3], "cuda", torch.bfloat16, seed=0)
    with pytest.raises(ValueError, match="host memory"):
        kernels.decode(q, k, v, lens, impl="offload_cpu")
