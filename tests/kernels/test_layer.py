"""The linear-layer and decoder-layer cases: work counted as their parts', and the layer against a
plain float64 PyTorch layer written here (RoPE by complex rotation, attention from `reference`)."""
import dataclasses

import pytest
import torch

from kernels import REGISTRY, Shape
from kernels.arch import ARCHS
from kernels.inputs import make_paged_cache
from kernels.layer import (
    DecodeCache,
    decode_layer,
    prefill_layer,
    random_weights,
    rope_tables,
)
from tests.tensors import TOL, rel_err
from tests.kernels.reference import attention_ref

TINY = ARCHS["tiny"]


def tiny_shape(**kw) -> Shape:
    return Shape(heads=TINY.heads, kv_heads=TINY.kv_heads, head_dim=TINY.head_dim, hidden=TINY.hidden,
                 ffn=TINY.ffn, **{"batch_size": 2, **kw})


def _rope_ref(x, positions, theta):
    """Pairs (i, i + d/2) as complex numbers, multiplied by e^(i pos theta^(-2i/d))."""
    d = x.shape[-1]
    z = torch.complex(x[..., : d // 2], x[..., d // 2:])
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = z * torch.exp(1j * positions.double()[:, None] * freqs)[:, None, :]  # [N, 1, d/2]: every head
    return torch.cat([z.real, z.imag], dim=-1)


def layer_ref(x, w, shape, theta=500000.0):
    """x [B, N, hidden] -> (output, post-RoPE K [B, Hkv, N, D], V [B, Hkv, N, D]), all float64."""
    x = x.double()
    wd = {f.name: getattr(w, f.name).double() for f in dataclasses.fields(w)}

    def norm(t, g):
        return t / torch.sqrt((t * t).mean(-1, keepdim=True) + 1e-5) * g

    b, n, _ = x.shape
    hq, hkv, d = shape.heads, shape.kv_heads, shape.head_dim
    qkv = norm(x, wd["attn_norm"]) @ wd["qkv"].T
    q = qkv[..., : hq * d].reshape(b, n, hq, d)
    k = qkv[..., hq * d: (hq + hkv) * d].reshape(b, n, hkv, d)
    v = qkv[..., (hq + hkv) * d:].reshape(b, n, hkv, d)
    pos = torch.arange(n)
    q, k = _rope_ref(q, pos, theta), _rope_ref(k, pos, theta)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    o = attention_ref(q, k, v, causal=True).transpose(1, 2).reshape(b, n, hq * d)
    h = x + o @ wd["o"].T
    gate, up = (norm(h, wd["mlp_norm"]) @ wd["gate_up"].T).chunk(2, dim=-1)
    return h + (gate * torch.sigmoid(gate) * up) @ wd["down"].T, k, v


@pytest.fixture
def layer_inputs():
    shape = tiny_shape(seq_len=6)
    gen = torch.Generator().manual_seed(3)
    w = random_weights(shape, gen, torch.device("cpu"), torch.float32)
    x = torch.randn((2, 6, TINY.hidden), generator=gen)
    return shape, w, x, layer_ref(x, w, shape)


# float32 on the CPU; on a GPU, bf16 as the sweeps run it (judged by relative error, METHOD.md's).
PLACES = [pytest.param("cpu", torch.float32), pytest.param("cuda", torch.bfloat16, marks=pytest.mark.gpu)]


def _on(w, device, dtype):
    return dataclasses.replace(w, **{f.name: getattr(w, f.name).to(device, dtype) for f in dataclasses.fields(w)})


def _close(got, want, dtype):
    if dtype == torch.float32:
        return torch.allclose(got.double().cpu(), want, atol=1e-4, rtol=1e-4)
    return rel_err(got, want) < TOL[dtype]


@pytest.mark.parametrize("device,dtype", PLACES)
def test_prefill_layer_matches_the_reference(layer_inputs, device, dtype):
    shape, w, x, (want, _, _) = layer_inputs
    cos, sin = rope_tables(torch.arange(6, device=device), shape.head_dim, dtype)
    got = prefill_layer(x.to(device, dtype), _on(w, device, dtype), shape, cos, sin)
    assert _close(got, want, dtype)


@pytest.mark.parametrize("device,dtype", PLACES)
@pytest.mark.parametrize("paged", [False, True])
def test_decode_layer_of_the_last_token_matches_the_prompt_through_the_reference(layer_inputs, paged, device, dtype):
    # The last prompt token decoded over a cache of the first five (its own slot holds random
    # data, which the layer must overwrite) gives the reference's last output.
    shape, w, x, (want, k_ref, v_ref) = layer_inputs
    k, v = k_ref.float().clone(), v_ref.float().clone()
    k[:, :, -1], v[:, :, -1] = torch.randn_like(k[:, :, -1]), torch.randn_like(v[:, :, -1])
    lens = torch.full((2,), 6, dtype=torch.int32)
    k, v = k.to(device, dtype), v.to(device, dtype)
    lens = lens.to(device)
    cache = DecodeCache(k, v, lens)
    if paged:
        k_pages, v_pages, table = make_paged_cache(k, v, lens, 4, torch.Generator(device).manual_seed(1))
        cache = DecodeCache(k_pages, v_pages, lens, table)
    cos, sin = rope_tables(lens - 1, shape.head_dim, dtype)
    got = decode_layer(x[:, -1].to(device, dtype), _on(w, device, dtype), shape, cache, cos, sin)
    assert _close(got, want[:, -1], dtype)


def test_a_layer_counts_the_work_of_its_parts():
    for name, shape in (("layer.prefill", tiny_shape(seq_len=7, causal=False)),
                        ("layer.decode_paged", tiny_shape(context_len=13, page_size=4))):
        case = REGISTRY.get(name)
        parts = case.parts(shape)
        assert [REGISTRY.get(n).op for n, _ in parts] == ["linear.qkv", "attention", "linear.o", "linear.gate_up",
                                                           "linear.down"]
        assert case.flops(shape) == sum(REGISTRY.get(n).flops(s) for n, s in parts)
        assert case.min_bytes(shape, torch.float16) == sum(REGISTRY.get(n).min_bytes(s, torch.float16) for n, s in parts)
        assert all(REGISTRY.get(n).tokens(s) == case.tokens(shape) for n, s in parts)
    assert REGISTRY.get("layer.prefill").parts(tiny_shape(causal=False))[1][1].causal  # a decoder's prefill is causal
    assert REGISTRY.get("layer.decode_paged").parts(tiny_shape())[1][0] == "decode.torch_paged"


def test_linear_work_by_hand():
    shape = tiny_shape(batch_size=3, seq_len=5)
    qkv_out = (TINY.heads + 2 * TINY.kv_heads) * TINY.head_dim
    prefill, decode = REGISTRY.get("gemm.qkv.prefill"), REGISTRY.get("gemm.down.decode")
    assert prefill.tokens(shape) == 15 and decode.tokens(shape) == 3
    assert prefill.flops(shape) == 2 * 15 * TINY.hidden * qkv_out
    assert decode.min_bytes(shape, torch.float32) == 4 * (TINY.ffn * TINY.hidden + 3 * TINY.ffn + 3 * TINY.hidden)
    assert "ffn" not in prefill.shape_fields(shape) and "heads" not in decode.shape_fields(shape)
