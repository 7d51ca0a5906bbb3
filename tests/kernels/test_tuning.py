import torch
import triton.testing

from kernels import triton_decode, triton_prefill
from kernels.tuning import REP_MS, WARMUP_MS, quick_bench


def test_both_kernels_tune_with_short_timing_runs(monkeypatch):
    # Triton's default (25 ms + 100 ms per config) would make the split-count search take minutes.
    assert triton_prefill.PREFILL_TUNED.do_bench is quick_bench
    assert triton_decode.SPLIT_TUNED.do_bench is quick_bench
    calls = []
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: calls.append(kw) or [1.0, 0.9, 1.1])
    assert quick_bench(lambda: None, quantiles=(0.5, 0.2, 0.8)) == [1.0, 0.9, 1.1]
    assert calls == [{"warmup": WARMUP_MS, "rep": REP_MS, "quantiles": (0.5, 0.2, 0.8)}]
    assert WARMUP_MS + REP_MS < 25 + 100


def test_split_candidates_stop_at_a_few_waves(monkeypatch):
    monkeypatch.setattr(triton_decode, "_sm_count", lambda device: 132)  # an H100's SMs
    gpu = torch.device("cuda")
    most = triton_decode.MAX_PROGRAMS_PER_SM * 132
    for batch in (1, 8, 32, 64, 128):
        found = triton_decode.split_candidates(batch, 8, 16384, gpu)
        assert found[0] == triton_decode.plan_splits(batch, 8, 16384, gpu)[0]  # the heuristic's first
        assert 1 in found and len(set(found)) == len(found)
        assert all(batch * 8 * n <= most for n in found[1:] if n != 1)
    assert triton_decode.split_candidates(64, 8, 16384, gpu) == [1, 2]
    assert triton_decode.split_candidates(128, 8, 16384, gpu) == [1]
    assert max(triton_decode.split_candidates(1, 8, 16384, gpu)) == triton_decode.MAX_SPLITS
