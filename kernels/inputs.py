"""Random inputs of the cases: a seeded generator, random tensors (never zeros), paged caches."""
from __future__ import annotations

import math

import torch


def generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def randn(shape: tuple[int, ...], gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Random data, never zeros: zeros hide unwritten outputs and can run faster than real data.
    return torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dtype)


def make_paged_cache(
    k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor, page_size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scatter contiguous caches `[B, Hkv, L, D]` into pages `[P, page_size, Hkv, D]` placed in a
    random order (as an allocator would leave them), returning `(k_pages, v_pages, block_table)`.

    Slots past a request's length hold random data (never zeros) and table entries past its last
    page point at page 0: neither may influence the result.
    """
    b, hkv, cache_len, d = k.shape
    max_pages = math.ceil(cache_len / page_size)
    pages_per_req = [math.ceil(int(n) / page_size) for n in seq_lens.tolist()]
    total = sum(pages_per_req)
    cpu_gen = torch.Generator().manual_seed(int(gen.initial_seed()))
    slots = torch.randperm(total, generator=cpu_gen)
    req = torch.repeat_interleave(torch.arange(b), torch.tensor(pages_per_req))
    page = torch.cat([torch.arange(n) for n in pages_per_req])
    block_table = torch.zeros((b, max_pages), dtype=torch.int32)
    block_table[req, page] = slots.to(torch.int32)

    def scatter(cache: torch.Tensor) -> torch.Tensor:
        padded = torch.empty((b, max_pages * page_size, hkv, d), dtype=cache.dtype, device=cache.device)
        padded.normal_(generator=gen)
        padded[:, :cache_len] = cache.transpose(1, 2)
        padded = padded.view(b, max_pages, page_size, hkv, d)
        pages = torch.empty((total, page_size, hkv, d), dtype=cache.dtype, device=cache.device)
        pages[slots.to(cache.device)] = padded[req.to(cache.device), page.to(cache.device)]
        return pages

    return scatter(k), scatter(v), block_table.to(k.device)
