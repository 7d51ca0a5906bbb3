"""Which SDPA path lets masked (poisoned) cache slots into a GQA decode on CUDA?"""
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
lens = [1, 37, 64, 50]
for group in (1, 2, 4, 8):
    for d in (64, 128):
        b, hkv, L = 4, 2, 64
        hq = hkv * group
        q = torch.randn(b, hq, d, device=dev).to(dt)
        k = torch.randn(b, hkv, L, d, device=dev).to(dt)
        v = torch.randn(b, hkv, L, d, device=dev).to(dt)
        seq = torch.tensor(lens, device=dev)
        kp, vp = k.clone(), v.clone()
        for r, n in enumerate(lens):
            kp[r, :, n:] = 3e4
            vp[r, :, n:] = -3e4
        mask = (torch.arange(L, device=dev)[None] < seq[:, None])[:, None, None, :]
        ref = F.scaled_dot_product_attention(q.unsqueeze(2).double(), k.double().repeat_interleave(group, 1),
                                             v.double().repeat_interleave(group, 1), attn_mask=mask).squeeze(2)
        row = [f"g={group} d={d}"]
        for name, backends in [("auto", None), ("math", [SDPBackend.MATH]), ("eff", [SDPBackend.EFFICIENT_ATTENTION]),
                               ("cudnn", [SDPBackend.CUDNN_ATTENTION])]:
            for gqa in ("enable_gqa", "repeat"):
                try:
                    kk, vv = (kp, vp) if gqa == "enable_gqa" else (kp.repeat_interleave(group, 1), vp.repeat_interleave(group, 1))
                    gqa_flag = gqa == "enable_gqa" and group > 1
                    with sdpa_kernel(backends) if backends else nullcontext():  # None: PyTorch chooses
                        o = F.scaled_dot_product_attention(q.unsqueeze(2), kk, vv, attn_mask=mask,
                                                           enable_gqa=gqa_flag).squeeze(2)
                    err = [float((o[r].double() - ref[r]).norm() / ref[r].norm()) for r in range(b)]
                    row.append(f"{name}/{gqa}:" + ",".join(f"{e:.0e}" for e in err))
                except RuntimeError:
                    row.append(f"{name}/{gqa}:n/a")
        print(" | ".join(row), flush=True)
