"""Continuous-batching simulation of one serving replica.

Each step prefills the requests admitted in it (all their prompt tokens) and decodes one token
for every running request; a request is admitted when it has arrived, the batch has room
(`max_batch`), the step's prompt-token budget has room (`max_prefill_tokens`) and the KV cache
has room for its prompt and output. Step time and energy come
from `serving.StepCost`; while nothing runs, the replica idles at its idle power. Per request:
time to first token (TTFT), time per output token after the first (TPOT), completion time.

Running sums keep each step O(1) plus heap operations, so tens of thousands of requests take
seconds. With `slo` and `abort_violations`, a run stops as soon as more requests have missed
their TTFT than allowed (used to search capacity quickly); it is then marked `aborted`.
"""
from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from bench.carbon.serving.result import SimResult, Slo
from bench.carbon.serving.step import StepCost

__all__ = ["SimResult", "Slo", "simulate"]


def simulate(arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray, cost: StepCost, max_batch: int,
             online: np.ndarray | None = None, slo: Slo | None = None, abort_violations: int | None = None,
             horizon_s: float | None = None, max_prefill_tokens: int = 0) -> SimResult:
    """`max_batch` caps the decode batch, `max_prefill_tokens` (0: no cap) the prompt tokens
    prefilled in one step: a batch size per phase (a prompt longer than the cap runs alone)."""
    n = len(arrival_s)
    order = np.argsort(arrival_s, kind="stable")
    arrival_s, prompt, output = arrival_s[order], prompt[order].astype(float), np.maximum(output[order], 1)
    online = np.ones(n, bool) if online is None else online[order]
    kv_room = max(0.0, cost.device.memory_bytes - cost.bytes_per_step)
    kv_capacity = kv_room / cost.bytes_per_context_token if cost.bytes_per_context_token else math.inf
    ttft, first, finish = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    waiting: deque[int] = deque()
    running: list[tuple[int, int]] = []  # heap of (last step, request)
    reserved = 0.0  # KV tokens reserved by running requests (prompt + output)
    sum_prompt = sum_start = 0.0  # context of running requests at step k: sum_prompt + n_run x k - sum_start
    n_run = 0
    busy_energy = idle_energy = busy_s = 0.0
    start = float(arrival_s[0]) if n else 0.0
    now = start
    nxt, step, violations, aborted = 0, 0, 0, False
    while nxt < n or waiting or running:
        while nxt < n and arrival_s[nxt] <= now:
            waiting.append(nxt)
            nxt += 1
        if not waiting and not running:
            idle_energy += cost.device.idle_w * (arrival_s[nxt] - now)
            now = float(arrival_s[nxt])
            continue
        new_tokens = pairs = 0.0
        admitted = []
        while waiting and n_run + len(admitted) < max_batch:
            r = waiting[0]
            need = prompt[r] + output[r]
            if reserved + need > kv_capacity and (running or admitted):
                break  # wait for memory; a lone request too big for memory still runs (and is slow)
            if max_prefill_tokens and admitted and new_tokens + prompt[r] > max_prefill_tokens:
                break
            waiting.popleft()
            admitted.append(r)
            reserved += need
            new_tokens += prompt[r]
            pairs += prompt[r] * (prompt[r] + 1) / 2
        context = sum_prompt + n_run * step - sum_start
        t, e = cost.time_energy(new_tokens, pairs, float(n_run), context)
        now += t
        busy_s += t
        busy_energy += e
        for r in admitted:
            ttft[r] = now - arrival_s[r]
            first[r] = now
            if slo is not None and online[r] and ttft[r] > slo.ttft_s:
                violations += 1
            if output[r] == 1:
                finish[r] = now
                reserved -= prompt[r] + output[r]
            else:
                heapq.heappush(running, (step + int(output[r]) - 1, r))
                n_run += 1
                sum_prompt += prompt[r] + 1
                sum_start += step + 1  # its context grows by one token per step from the next
        while running and running[0][0] <= step:
            last, r = heapq.heappop(running)
            finish[r] = now
            n_run -= 1
            sum_prompt -= prompt[r] + 1
            sum_start -= last - (int(output[r]) - 1) + 1
            reserved -= prompt[r] + output[r]
        step += 1
        if abort_violations is not None and violations > abort_violations:
            aborted = True
            break
        if horizon_s is not None and now - start > horizon_s:
            aborted = True
            break
    tpot = np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), np.nan)
    inverse = np.empty(n, int)
    inverse[order] = np.arange(n)
    return SimResult(ttft[inverse], tpot[inverse], finish[inverse], online[inverse], busy_energy, idle_energy,
                     busy_s, now - start, aborted)
