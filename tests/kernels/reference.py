"""Float64 attention written independently of the kernels: explicit loops over groups, masks
built from indices."""
import math

import torch


def attention_ref(q, k, v, *, causal: bool, sm_scale=None):
    """q [B,Hq,N,D], k/v [B,Hkv,M,D] -> [B,Hq,N,D] float64, causal mask aligned to the end."""
    q, k, v = (t.detach().to("cpu", torch.float64) for t in (q, k, v))
    b, hq, n, d = q.shape
    hkv, m = k.shape[1], k.shape[2]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    group = hq // hkv
    out = torch.empty_like(q)
    rows = torch.arange(n)[:, None]
    cols = torch.arange(m)[None, :]
    allowed = cols <= rows + (m - n) if causal else torch.ones(n, m, dtype=torch.bool)
    for h in range(hq):
        kh, vh = k[:, h // group], v[:, h // group]
        scores = q[:, h] @ kh.transpose(-1, -2) * scale
        scores = scores.masked_fill(~allowed, float("-inf"))
        out[:, h] = torch.softmax(scores, dim=-1) @ vh
    return out


def decode_ref(q, k, v, seq_lens, sm_scale=None):
    """q [B,Hq,D], contiguous k/v [B,Hkv,L,D], per-request lengths -> [B,Hq,D] float64."""
    outs = []
    for r, n in enumerate(seq_lens.tolist()):
        outs.append(attention_ref(q[r : r + 1, :, None], k[r : r + 1, :, :n], v[r : r + 1, :, :n], causal=False, sm_scale=sm_scale)[:, :, 0])
    return torch.cat(outs)
