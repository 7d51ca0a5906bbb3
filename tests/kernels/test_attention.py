import pytest
import torch

import kernels
from kernels.cases import make_paged_cache
from kernels.torch_attention import CUDA_ONLY
from tests.tensors import DEVICES, TOL, rel_err
from tests.kernels.reference import attention_ref, decode_ref


def randn(*shape, device="cpu", dtype=torch.float32, gen=None):
    return torch.randn(*shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def dtype_for(device):
    # On the CPU the Triton interpreter's bf16 dot is wrong (Triton #11584): fp32 there.
    return torch.float32 if device == "cpu" else torch.bfloat16


def run_prefill(q, k, v, causal, impl):
    if q.device.type == "cpu" and impl in CUDA_ONLY:
        pytest.skip(f"{impl} is CUDA-only")
    try:
        return kernels.prefill(q, k, v, causal=causal, impl=impl)
    except RuntimeError as err:  # a pinned SDPA backend that does not take this input
        if "No viable backend" in str(err) or "No available kernel" in str(err):
            pytest.skip(f"{impl}: {str(err)[:80]}")
        raise


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", kernels.prefill_impls())
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "b,hq,hkv,n,m,d",
    [(1, 4, 4, 17, 17, 64), (2, 4, 2, 33, 33, 128), (1, 8, 2, 13, 45, 64), (2, 8, 1, 31, 31, 64), (1, 16, 2, 7, 7, 128)],
)
def test_prefill_matches_float64_reference(device, impl, causal, b, hq, hkv, n, m, d, poisoned_outputs):
    gen = torch.Generator().manual_seed(hash((b, hq, hkv, n, m, d, causal)) % 2**31)
    dtype = dtype_for(device)
    q, k, v = (randn(b, h, s, d, device=device, dtype=dtype, gen=gen) for h, s in [(hq, n), (hkv, m), (hkv, m)])
    out = run_prefill(q, k, v, causal, impl)
    assert out.shape == (b, hq, n, d) and out.dtype == dtype
    assert rel_err(out, attention_ref(q, k, v, causal=causal)) < TOL[dtype]


@pytest.mark.parametrize("impl", ("torch", "triton"))
def test_custom_scale(impl):
    # Triton applies the scale inside the exponent's argument and to each row's max, not to the
    # score tile: a scale far from the default 1/sqrt(d) checks that it is applied, and once.
    gen = torch.Generator().manual_seed(1)
    q, k, v = randn(1, 2, 5, 64, gen=gen), randn(1, 2, 37, 64, gen=gen), randn(1, 2, 37, 64, gen=gen)
    out = kernels.prefill(q, k, v, sm_scale=0.9, impl=impl)
    assert rel_err(out, attention_ref(q, k, v, causal=False, sm_scale=0.9)) < TOL[torch.float32]
    lens = torch.tensor([37], dtype=torch.int32)
    out = kernels.decode(q[:, :, 0], k, v, lens, sm_scale=0.9, impl=impl)
    assert rel_err(out, decode_ref(q[:, :, 0], k, v, lens, sm_scale=0.9)) < TOL[torch.float32]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("causal", [False, True])
def test_tma_tail_blocks_never_see_the_next_heads_keys(device, causal, poisoned_outputs):
    # The TMA kernel views k/v as [B * Hkv * M, D], so a tail block's rows past M are the next
    # head's first rows. Make those keys huge and their values infinite: if any leaked into a
    # score, or a zero weight met an infinite value, KV head 0's outputs would be off or NaN.
    gen = torch.Generator().manual_seed(12)
    dtype = dtype_for(device)
    b, hq, hkv, n, m, d = 2, 4, 2, 21, 37, 64
    q = randn(b, hq, n, d, device=device, dtype=dtype, gen=gen)
    k, v = (randn(b, hkv, m, d, device=device, dtype=dtype, gen=gen) for _ in range(2))
    k[:, 1, :8] = 30.0
    v[:, 1, :8] = float("inf")
    out = kernels.prefill(q, k, v, causal=causal, impl="triton_tma")
    plain = [0, 1]  # the query heads of KV head 0
    ref = attention_ref(q[:, plain], k[:, :1], v[:, :1], causal=causal)
    assert rel_err(out[:, plain], ref) < TOL[dtype]


def test_tma_prefill_refuses_strided_views():
    q = torch.randn(1, 2, 8, 64 * 2)[..., ::2]  # a view with stride 2 in the head dim
    k = v = torch.randn(1, 2, 8, 64)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.prefill(q, k, v, impl="triton_tma")
    assert rel_err(kernels.prefill(q, k, v, impl="triton"), attention_ref(q, k, v, causal=False)) < TOL[torch.float32]


def test_autotune_configs_set_the_tma_block_shapes():
    from kernels.triton_prefill import TensorDescriptor, autotune_configs, set_block_shapes

    x = torch.randn(64, 128)
    nargs = {"Q": TensorDescriptor.from_tensor(x, [16, 128]), "K": TensorDescriptor.from_tensor(x, [16, 128]),
             "V": TensorDescriptor.from_tensor(x, [16, 128])}
    for config in autotune_configs():
        assert config.pre_hook is set_block_shapes
        config.pre_hook({**nargs, **config.kwargs})
        assert nargs["Q"].block_shape == [config.kwargs["BLOCK_M"], 128]
        assert nargs["K"].block_shape == nargs["V"].block_shape == [config.kwargs["BLOCK_N"], 128]
    set_block_shapes({"Q": x, "K": x, "V": x, "BLOCK_M": 64, "BLOCK_N": 64})  # pointer kernel: nothing to set


def decode_inputs(b, hq, hkv, cache_len, d, seq_lens, device, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    q = randn(b, hq, d, device=device, dtype=dtype, gen=gen)
    k = randn(b, hkv, cache_len, d, device=device, dtype=dtype, gen=gen)
    v = randn(b, hkv, cache_len, d, device=device, dtype=dtype, gen=gen)
    return q, k, v, torch.tensor(seq_lens, dtype=torch.int32, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ("torch", "triton", "triton_tma"))  # cache on the device; offload: test_offload.py
@pytest.mark.parametrize("group", [1, 2, 4, 8])
@pytest.mark.parametrize("d", [64, 128])
def test_decode_contiguous_varied_lengths(device, impl, group, d, poisoned_outputs):
    dtype = dtype_for(device)
    seq_lens = [1, 37, 64, 50]
    q, k, v, lens = decode_inputs(4, 2 * group, 2, 64, d, seq_lens, device, dtype, seed=group * d)
    # Poison the cache past each request's length with values far outside real activations: a
    # kernel that lets them in fails loudly. Not NaN or ~1e4: PyTorch's cuDNN backend masks with
    # a finite bias, which such values overcome (seen on H100, torch 2.11; see kernels.decode).
    for r, n in enumerate(seq_lens):
        k[r, :, n:] = 50.0
        v[r, :, n:] = -50.0
    out = kernels.decode(q, k, v, lens, impl=impl)
    assert out.shape == (4, 2 * group, d)
    ref = decode_ref(q, k, v, lens)
    assert rel_err(out, ref) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", [64, 128])
def test_tma_decode_never_reads_the_next_heads_rows(device, d, poisoned_outputs):
    # Full-length requests: the last block of KV head 0 runs past the cache's end into KV head
    # 1's first rows (TMA sees [B * Hkv * L, D]). Those hold huge keys and infinite values.
    dtype = dtype_for(device)
    q, k, v, lens = decode_inputs(2, 4, 2, 40, d, [40, 40], device, dtype, seed=d)
    k[:, 1] = 30.0
    v[:, 1] = float("inf")
    out = kernels.decode(q, k, v, lens, impl="triton_tma")
    plain = [0, 1]  # the query heads of KV head 0
    ref = decode_ref(q[:, plain], k[:, :1], v[:, :1], lens)
    assert rel_err(out[:, plain], ref) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ("torch", "triton"))  # cache on the device; offload: test_offload.py
@pytest.mark.parametrize("page_size", [16, 7])
def test_decode_paged_equals_reference(device, impl, page_size, poisoned_outputs):
    dtype = dtype_for(device)
    seq_lens = [1, 29, 16, 40, 33]  # 1, not a multiple of the page size, exact multiples
    q, k, v, lens = decode_inputs(5, 8, 2, 40, 64, seq_lens, device, dtype, seed=page_size)
    gen = torch.Generator(device=device).manual_seed(3)
    k_pages, v_pages, table = make_paged_cache(k, v, lens.cpu(), page_size, gen)
    assert table.shape == (5, -(-40 // page_size))
    out = kernels.decode(q, k_pages, v_pages, lens, block_table=table, impl=impl)
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("num_splits", [1, 3, 8])  # one, an odd count, more splits than a short request fills
@pytest.mark.parametrize("impl", ("triton", "triton_tma"))
def test_triton_decode_any_split_count_gives_the_same_answer(device, num_splits, impl, poisoned_outputs):
    dtype = dtype_for(device)
    # Over a 520-token cache, 8 asked for are 5 splits of 128 (3 are 3 of 256): request 0 leaves all
    # but one empty, 400 ends inside a split, 129 a token into one, 256 exactly at a split's end
    # (the next split starts at its length).
    seq_lens = [1, 400, 129, 256]
    q, k, v, lens = decode_inputs(4, 8, 2, 520, 64, seq_lens, device, dtype, seed=num_splits)
    out = kernels.decode(q, k, v, lens, impl=impl, num_splits=num_splits)
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[dtype]


@pytest.mark.parametrize("tma", [False, True])
def test_triton_log_sum_exp_outputs(tma):
    from kernels.triton_decode import decode_triton
    from kernels.triton_prefill import prefill_triton

    gen = torch.Generator().manual_seed(5)
    q, k, v = randn(2, 4, 9, 64, gen=gen), randn(2, 2, 20, 64, gen=gen), randn(2, 2, 20, 64, gen=gen)
    _, lse = prefill_triton(q, k, v, causal=True, sm_scale=None, return_lse=True, tma=tma)
    scores = q.double() @ k.double().repeat_interleave(2, 1).transpose(-1, -2) / 8.0
    allowed = torch.arange(20)[None, :] <= torch.arange(9)[:, None] + 11
    ref = torch.logsumexp(scores.masked_fill(~allowed, float("-inf")), -1)
    assert torch.allclose(lse.double(), ref, atol=1e-5)
    lens = torch.tensor([20, 3], dtype=torch.int32)
    _, lse = decode_triton(q[:, :, 0], k, v, lens, block_table=None, sm_scale=None, return_lse=True)
    ref = torch.stack([torch.logsumexp(scores[r, :, 0, :n], -1) for r, n in enumerate(lens.tolist())])
    assert torch.allclose(lse.double(), ref, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ("triton", "triton_tma"))
def test_triton_decode_replays_in_a_cuda_graph_with_new_lengths(impl):
    q, k, v, lens = decode_inputs(4, 16, 2, 2048, 128, [2048, 1, 1000, 77], "cuda", torch.bfloat16, seed=9)
    kernels.decode(q, k, v, lens, impl=impl)  # compile and autotune outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = kernels.decode(q, k, v, lens, impl=impl)
    lens.copy_(torch.tensor([5, 2048, 333, 1], dtype=torch.int32))  # new lengths, same grid
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[torch.bfloat16]


@pytest.mark.gpu
def test_triton_decode_never_times_split_counts_inside_a_capture():
    from kernels import triton_decode

    q, k, v, lens = decode_inputs(8, 32, 8, 4096, 128, [4096, 3000, 1, 17, 4096, 2048, 999, 128], "cuda",
                                   torch.bfloat16, seed=10)
    kernels.decode(q, k, v, lens, impl="triton")  # warm-up: every split count compiled and timed
    triton_decode.CHOSEN_SPLITS.clear()  # as if this shape's choice were unknown at capture time
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):  # timing here would raise: the heuristic's split count is used
        out = kernels.decode(q, k, v, lens, impl="triton")
    graph.replay()
    torch.cuda.synchronize()
    assert not triton_decode.CHOSEN_SPLITS
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[torch.bfloat16]


def test_paged_layout_is_scattered_and_complete():
    seq_lens = torch.tensor([5, 16, 17], dtype=torch.int32)
    k = torch.randn(3, 2, 17, 4)
    v = torch.randn(3, 2, 17, 4)
    k_pages, v_pages, table = make_paged_cache(k, v, seq_lens, 8, torch.Generator().manual_seed(0))
    used = [int(table[r, p]) for r, n in enumerate(seq_lens.tolist()) for p in range(-(-n // 8))]
    assert sorted(used) == list(range(k_pages.shape[0]))  # every page used once
    for r, n in enumerate(seq_lens.tolist()):
        for pos in range(n):
            page, slot = int(table[r, pos // 8]), pos % 8
            assert torch.equal(k_pages[page, slot], k[r, :, pos])
            assert torch.equal(v_pages[page, slot], v[r, :, pos])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kernels.prefill(torch.randn(1, 6, 4, 8), torch.randn(1, 4, 4, 8), torch.randn(1, 4, 4, 8)), "multiple"),
        (lambda: kernels.prefill(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 16), torch.randn(1, 2, 4, 16)), "head_dim"),
        (lambda: kernels.prefill(torch.randn(1, 2, 9, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), causal=True), "N <= M"),
        (lambda: kernels.prefill(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), impl="nope"), "impl"),
        (lambda: kernels.prefill(torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8)), "4-D"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.tensor([5])), "seq_lens"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(3, 2, 5, 8), torch.randn(3, 2, 5, 8), torch.tensor([5, 5])), "batch"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.tensor([5, 5]), impl="x"), "impl"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.tensor([5, 5]), threads=3), "options"),
        (lambda: kernels.prefill(torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32), torch.randn(1, 2, 4, 32), impl="triton"), "head_dim"),
        (lambda: kernels.decode(torch.randn(2, 4, 32), torch.randn(2, 2, 5, 32), torch.randn(2, 2, 5, 32), torch.tensor([5, 5]), impl="triton"), "head_dim"),
        (lambda: kernels.decode(torch.randn(2, 4, 8), torch.randn(4, 4, 2, 8), torch.randn(4, 4, 2, 8), torch.tensor([5, 5]),
                                block_table=torch.zeros(2, 2)), "int32"),
        (lambda: kernels.prefill(torch.randn(1, 2, 4, 64), torch.randn(1, 2, 4, 64), torch.randn(1, 2, 4, 64), impl="triton",
                                 sm_scale=-0.1), "sm_scale"),
        (lambda: kernels.decode(torch.randn(2, 4, 64), torch.randn(2, 2, 5, 64), torch.randn(2, 2, 5, 64), torch.tensor([5, 5]),
                                impl="triton", sm_scale=0.0), "sm_scale"),
        (lambda: kernels.decode(torch.randn(2, 4, 64), torch.randn(4, 4, 2, 64), torch.randn(4, 4, 2, 64), torch.tensor([5, 5]),
                                block_table=torch.zeros(2, 2, dtype=torch.int32), impl="triton_tma"), "contiguous caches only"),
        (lambda: kernels.decode(torch.randn(2, 4, 64), torch.randn(2, 5, 2, 64).transpose(1, 2), torch.randn(2, 2, 5, 64),
                                torch.tensor([5, 5]), impl="triton_tma"), "k_cache is not"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_split_count_tuning_picks_the_fastest_candidate_once():
    from kernels import triton_decode as td

    cpu = torch.device("cpu")
    candidates = td.split_candidates(4, 2, 1000, cpu)
    assert candidates[0] == td.plan_splits(4, 2, 1000, cpu)[0]  # the heuristic's first
    assert len(set(candidates)) == len(candidates) and max(candidates) <= td.math.ceil(1000 / td.SPLIT_ALIGN)
    calls = []

    def time_ms(n):
        calls.append(n)
        return {1: 3.0, 2: 1.0, 4: 1.0}.get(n, 5.0)

    key = ("test", len(calls))
    assert td.choose_splits(key, [1, 2, 4, 8], time_ms) == 2  # fastest; the tie goes to the earlier
    assert td.choose_splits(key, [1, 2, 4, 8], time_ms) == 2 and calls == [1, 2, 4, 8]  # timed once
    td.CHOSEN_SPLITS.pop(key)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ("triton", "triton_tma"))
def test_tuned_split_count_gives_the_reference_answer(impl):
    q, k, v, lens = decode_inputs(32, 32, 8, 4096, 128, [4096] * 31 + [7], "cuda", torch.bfloat16, seed=11)
    out = kernels.decode(q, k, v, lens, impl=impl)
    assert rel_err(out, decode_ref(q, k, v, lens)) < TOL[torch.bfloat16]


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ("triton", "triton_tma"))
@pytest.mark.parametrize("causal", [False, True])
def test_triton_prefill_in_float16(impl, causal):
    gen = torch.Generator().manual_seed(13)
    q = randn(2, 8, 300, 128, device="cuda", dtype=torch.float16, gen=gen)
    k, v = (randn(2, 2, 333, 128, device="cuda", dtype=torch.float16, gen=gen) for _ in range(2))
    out = run_prefill(q, k, v, causal, impl)
    assert out.dtype == torch.float16
    assert rel_err(out, attention_ref(q, k, v, causal=causal)) < TOL[torch.float16]


@pytest.mark.gpu
def test_triton_decode_in_float16():
    q, k, v, lens = decode_inputs(3, 16, 4, 1500, 64, [1500, 1, 777], "cuda", torch.float16, seed=14)
    out = kernels.decode(q, k, v, lens, impl="triton")
    assert out.dtype == torch.float16 and rel_err(out, decode_ref(q, k, v, lens)) < TOL[torch.float16]
