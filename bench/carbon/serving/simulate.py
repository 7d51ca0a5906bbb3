"""Continuous-batching simulation of one serving replica with a paged KV cache.

Each step decodes one token for every running request and prefills the requests admitted in
it (all their prompt tokens). A request is admitted when it has arrived, the batch has room
(`max_batch`), the step's prompt-token budget has room (`max_prefill_tokens`) and the KV cache
has free pages for its prompt. KV is held in pages of `page_tokens` tokens as tokens exist, the
way vLLM allocates it: ceil(tokens / page_tokens) pages, the prompt's at admission and one more
whenever a decoded token crosses into a new page. When a decode step needs a page and none is
free, the most recently admitted running request is preempted (vLLM's default, recompute): its
pages are freed and it goes to the front of the queue; readmitted, it prefills its prompt and
the tokens it had produced, keeps them, and its TTFT stays that of its first token. Step time
and energy come from `serving.StepCost`; while nothing runs, the replica idles at its idle
power. Per request: time to first token (TTFT), time per output token after the first (TPOT),
completion time, its share of the busy energy, and its token times (for ITL percentiles).

A model with sliding-window layers (Gemma 3) has them attend to the last `window_tokens` tokens, so
each step's context and each prompt's query-key pairs count their window, not the whole context; and
as vLLM's hybrid KV-cache manager frees the pages behind a window, such layers hold at most the
window's pages plus the one it straddles: past that, a request's new pages cost only its
full-attention layers' pages (counted per layer, so every count stays an integer). A prompt's
admission needs every layer's pages for the whole prompt, as vLLM allocates them; those behind
the window are freed once its prefill step has run. Two heap events per request (its context and
its pages passing the window) keep the sums O(1) per step.

A request that alone needs more KV than the memory holds is not refused: it runs alone, over
the memory (as if it spilled), and nothing is admitted beside it until it is done, so a trace
always completes; such a replica is slow, and the SLO shows it.

Running sums keep each step O(1) plus heap operations, so tens of thousands of requests take
seconds; stretches of decode-only steps (nothing to admit, finish or pass a window) run in a
tight loop or as arrays, to the same bits (`FAST_FORWARD`). Where numba is installed and the step
model is the datasheet one, the whole loop runs compiled instead (`simulate_compiled`, `COMPILED`),
again to the same bits and 15-17.5x faster (`results/simulate_bench/`). With `slo` and `abort_violations`, a
run stops as soon as more requests have missed their TTFT than allowed (used to search capacity
quickly); it is then marked `aborted`.
"""
from __future__ import annotations

import heapq
import math
from collections import deque

import numpy as np

from bench.carbon.serving import simulate_compiled
from bench.carbon.serving.result import SimResult, Slo
from bench.carbon.serving.step import StepCost

__all__ = ["SimResult", "Slo", "simulate"]

# Admission leaves this many pages free, as vLLM keeps a small free margin (its watermark) so a
# newly admitted request does not force a preemption on the very next decode step.
WATERMARK_PAGES = 1
# Run quiet stretches (decode-only steps with nothing to admit, finish or pass a window) in a tight
# loop; False runs every step through the full loop (the same results: a test holds them equal).
FAST_FORWARD = True
# Stretches at least this long are stepped as arrays (`_decode_stretch`; a numpy call costs ~20 steps
# of the per-step loop), at most this many at a time (a stretch cut short by an arrival wastes the rest).
VECTOR_MIN_STEPS, VECTOR_MAX_STEPS = 96, 2048
# Run the loop compiled (`simulate_compiled`, numba) where the step model allows it: the same results to
# the bit (a test holds them equal), 15-17.5x faster (results/simulate_bench/). False, or numba missing: the Python loop.
COMPILED = True


def simulate(arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray, cost: StepCost, max_batch: int,
             online: np.ndarray | None = None, slo: Slo | None = None, abort_violations: int | None = None,
             horizon_s: float | None = None, max_prefill_tokens: int = 0, page_tokens: int = 16) -> SimResult:
    """`max_batch` caps the running batch, `max_prefill_tokens` (0: no cap) the prompt tokens
    prefilled in one step: a batch size per phase (a prompt longer than the cap runs alone)."""
    if page_tokens < 1:
        raise ValueError(f"page_tokens={page_tokens}: must be >= 1")
    if not (max_batch >= 1 and (math.isinf(max_batch) or max_batch == int(max_batch))):
        raise ValueError(f"max_batch={max_batch}: must be a whole number >= 1 (or inf: no cap)")
    if not max_prefill_tokens >= 0:
        raise ValueError(f"max_prefill_tokens={max_prefill_tokens}: must be >= 0 (0: no cap)")
    if abort_violations is not None and not abort_violations >= 0:
        raise ValueError(f"abort_violations={abort_violations}: must be >= 0 (or None)")
    n = len(arrival_s)
    order = np.argsort(arrival_s, kind="stable")
    arrivals = arrival_s[order].astype(float).tolist()
    # Python ints and lists: the loop touches them per request per step, where numpy scalars are slow.
    prompts = np.maximum(prompt[order], 1).astype(int).tolist()  # a request needs a token to start from
    outputs = np.maximum(output[order], 1).astype(int).tolist()
    online = np.ones(n, bool) if online is None else online[order]
    online_l = online.tolist()
    step_cost = cost.scalar()
    fast_forward = FAST_FORWARD
    # Arrays only through the step model itself, not a composed step (floats only) nor a stand-in that
    # records each call (the validation's replay).
    datasheet = type(cost) is StepCost and cost.composed is None  # the step model itself, arrays and all
    vector_steps = fast_forward and datasheet
    kv_room = max(0.0, cost.device.memory_bytes - cost.resident_bytes)
    page_bytes = cost.bytes_per_context_token * page_tokens
    # Sliding windows: `share` of the layers attend to at most `window_tokens` tokens and hold at most
    # `held_cap_tokens` (the window's pages and the one it straddles) of KV. Pages are then counted per
    # layer (`unit` layer-pages make one whole-model page), so every count stays an integer.
    window_tokens = int(cost.window_tokens)
    share = float(cost.windowed_share) if window_tokens else 0.0
    if share and not 0 < cost.windowed_layers <= cost.kv_layers:
        raise ValueError(f"a windowed step cost needs 0 < windowed_layers ({cost.windowed_layers}) <= kv_layers "
                         f"({cost.kv_layers}): its pages are counted per layer")
    unit = int(cost.kv_layers) if share else 1
    past_unit = unit - int(cost.windowed_layers) if share else 1  # a page past the window: full-attention layers only
    held_cap_tokens = (-(-window_tokens // page_tokens) + 1) * page_tokens
    cap_pages = held_cap_tokens // page_tokens
    # A hybrid model's Mamba state, a fixed size per request, takes whole pages of the same memory for
    # as long as the request runs (0 without Mamba layers).
    state_pages = math.ceil(cost.state_bytes_per_seq / page_bytes) * unit if page_bytes and cost.state_bytes_per_seq else 0
    pages_total = math.floor(kv_room / page_bytes) * unit if page_bytes else math.inf
    # More pages than any run can hold are no limit: one int64 figure for it keeps every path's arithmetic in range.
    pages_total = min(pages_total, simulate_compiled.NO_PAGE_LIMIT)
    watermark = WATERMARK_PAGES * unit
    # Compiled where it gives the same results: the datasheet step model, and token counts whose causal pairs
    # (b (b + 1) / 2), summed over the most requests one step admits, stay in int64, as every real trace's do.
    if (n and COMPILED and datasheet and simulate_compiled.fits(cost)
            and _pairs_fit(max(prompts) + max(outputs), min(n, max_batch)) and simulate_compiled.available()):
        (ttft_a, first_a, finish_a, busy_energy, idle_energy, busy_s, span_s, aborted, preemptions, max_running,
         step_end_a, ept_a, segs) = simulate_compiled.run(
            arrivals, prompts, outputs, online, cost, max_batch, max_prefill_tokens, page_tokens, pages_total, unit,
            past_unit, share, window_tokens, held_cap_tokens, cap_pages, state_pages, watermark, slo, abort_violations,
            horizon_s)
        return _result(order, ttft_a, first_a, finish_a, np.array(outputs), online, busy_energy, idle_energy, busy_s,
                       span_s, bool(aborted), int(preemptions), int(max_running), step_end_a, ept_a, segs)

    def pages_of(held: int) -> int:
        """Pages a request holding `held` tokens of KV occupies between steps: whole-model pages, or
        layer-pages (`unit` to a whole-model page) with sliding windows."""
        p = -(-held // page_tokens)
        return (p * unit if held <= held_cap_tokens or not share else past_unit * p + (unit - past_unit) * cap_pages) \
            + state_pages

    events: list[tuple[int, int, int, int]] = []  # (step, 0: context passes the window | 1: pages do, request, epoch)
    past_context = [False] * n
    past_pages = [False] * n
    crossing_past = [0] * page_tokens  # like `crossing`, for requests whose pages passed the window
    win_base = win_at = win_n = 0  # sums over requests whose context passed the window
    ttft, first, finish = [math.nan] * n, [math.nan] * n, [math.nan] * n
    produced = [0] * n  # tokens a request produced before its current admission
    base = [0] * n  # tokens prefilled at its current admission (prompt + produced)
    admitted_at = [0] * n  # the step of its current admission
    epoch = [0] * n  # bumped when it leaves the running set: older heap and stack entries are stale
    waiting: deque[int] = deque()
    running: list[tuple[int, int, int]] = []  # heap of (last step, request, epoch)
    recent: list[tuple[int, int]] = []  # (request, epoch) in admission order: the top is preempted first
    # A running request r holds base + k - admitted_at tokens after step k, so it needs a new page
    # in step k when k = admitted_at + 1 - base (mod page_tokens): crossing[c] counts those with c.
    crossing = [0] * page_tokens
    used = 0  # pages held
    sum_base = sum_at = 0  # context of running requests at step k: sum_base + n_run x k - sum_at
    n_run = 0  # running requests decoding in the next step
    step_end_s: list[float] = []
    energy_per_token_j: list[float] = []  # each step's energy over the tokens it processed
    seg_request: list[int] = []
    seg_first: list[int] = []
    seg_last: list[int] = []
    seg_prefill: list[int] = []  # tokens prefilled at that admission
    busy_energy = idle_energy = busy_s = 0.0
    start = arrivals[0] if n else 0.0
    now = start
    nxt, step, violations, aborted, preemptions, max_running = 0, 0, 0, False, 0, 0

    def leave_window(r: int, c: int) -> None:
        """Take request r (crossing class c) out of the crossing counts and the window sums."""
        nonlocal win_base, win_at, win_n
        if past_pages[r]:
            crossing_past[c] -= 1
            past_pages[r] = False
        else:
            crossing[c] -= 1
        if past_context[r]:
            win_base -= base[r]
            win_at -= admitted_at[r]
            win_n -= 1
            past_context[r] = False

    def close(r: int, last: int) -> None:
        seg_request.append(r)
        seg_first.append(admitted_at[r])
        seg_last.append(last)
        seg_prefill.append(base[r])

    while nxt < n or waiting or running:
        while nxt < n and arrivals[nxt] <= now:
            waiting.append(nxt)
            nxt += 1
        if not waiting and not running:
            idle_energy += cost.device.idle_w * (arrivals[nxt] - now)
            now = arrivals[nxt]
            continue
        while events and events[0][0] <= step:
            _, kind, r, ep = heapq.heappop(events)
            if ep != epoch[r]:
                continue
            if kind == 0:
                past_context[r] = True
                win_base += base[r]
                win_at += admitted_at[r]
                win_n += 1
            else:
                past_pages[r] = True
                c = (admitted_at[r] + 1 - base[r]) % page_tokens
                crossing[c] -= 1
                crossing_past[c] += 1
        if fast_forward and n_run and (not waiting or n_run >= max_batch or used + watermark
                                       + -(-(prompts[waiting[0]] + produced[waiting[0]]) // page_tokens) * unit
                                       + state_pages > pages_total):
            # Quiet steps: nothing can be admitted (no one waits, the batch is full, or the head of the
            # queue does not fit, which only gets worse as decodes take pages), and no request finishes
            # or passes its window before `until`. Each such step only decodes: the same arithmetic as
            # below, in the same order, without the admission and bookkeeping around it.
            until = running[0][0]
            if events and events[0][0] < until:
                until = events[0][0]
            arrival_admits = not waiting and nxt < n
            began = step
            stop = min(until, step + VECTOR_MAX_STEPS)
            if arrival_admits and len(step_end_s) > 1:  # the next arrival likely cuts it: about when
                last_s = step_end_s[-1] - step_end_s[-2]
                if last_s > 0:
                    stop = min(stop, step + int((arrivals[nxt] - now) / last_s * 1.05) + 2)
            if vector_steps and stop - step >= VECTOR_MIN_STEPS:
                k, now, busy_s, busy_energy, used, aborted = _decode_stretch(
                    cost, step, stop, n_run, used, pages_total, crossing, crossing_past,
                    unit, past_unit, share, sum_base, sum_at, win_n, win_base, win_at, window_tokens, now, busy_s,
                    busy_energy, start, horizon_s, arrivals[nxt] if arrival_admits else math.inf, step_end_s,
                    energy_per_token_j)
                step += k
                until = step  # done: no per-step loop below
            while step < until:
                c = step % page_tokens
                need = crossing[c] * unit
                if share:
                    need += past_unit * crossing_past[c]
                if need > pages_total - used and n_run > 1:
                    break  # a preemption: the full step below
                used += need
                context = sum_base + n_run * step - sum_at
                if win_n:
                    context -= share * (win_base + win_n * (step - window_tokens) - win_at)
                t, e = step_cost(0.0, 0.0, float(n_run), float(context), 0.0)
                now += t
                busy_s += t
                busy_energy += e
                step_end_s.append(now)
                energy_per_token_j.append(e / n_run)
                step += 1
                if horizon_s is not None and now - start > horizon_s:
                    aborted = True
                    break
                if arrival_admits and arrivals[nxt] <= now:
                    break  # the next step admits it
            if aborted:
                break
            if step > began:
                continue
        need = crossing[step % page_tokens] * unit
        if share:
            need += past_unit * crossing_past[step % page_tokens]
        preempted = False
        while need > pages_total - used and n_run > 1:  # the last one left runs over the memory instead
            r, ep = recent.pop()
            if ep != epoch[r]:
                continue
            epoch[r] += 1
            held = base[r] + step - 1 - admitted_at[r]  # tokens after the previous step
            used -= pages_of(held)
            c = (admitted_at[r] + 1 - base[r]) % page_tokens
            if c == step % page_tokens:
                need -= past_unit if past_pages[r] else unit  # it was to cross into a new page in this step
            leave_window(r, c)
            n_run -= 1
            sum_base -= base[r]
            sum_at -= admitted_at[r]
            close(r, step - 1)
            produced[r] += step - admitted_at[r]
            waiting.appendleft(r)
            preemptions += 1
            preempted = True
        used += need
        new_tokens = pairs = 0
        admitted = []
        released = 0  # pages behind the window that admitted prompts hold only during their prefill step
        # As vLLM does, nothing is admitted in a step that preempted: the evicted would come straight back.
        while not preempted and waiting and n_run + len(admitted) < max_batch:
            r = waiting[0]
            b = prompts[r] + produced[r]
            # vLLM allocates every layer's pages for the whole prompt and frees those behind a window
            # only once the prefill has run: admission needs them all.
            pages = -(-b // page_tokens) * unit + state_pages
            if used + pages + watermark > pages_total and (n_run or admitted):
                break  # wait for memory
            if max_prefill_tokens and admitted and new_tokens + b > max_prefill_tokens:
                break
            waiting.popleft()
            admitted.append(r)
            used += pages
            released += pages - pages_of(b)
            base[r] = b
            admitted_at[r] = step
            new_tokens += b
            pairs += b * (b + 1) // 2
            if share and b > window_tokens:  # windowed layers' queries see at most the window
                pairs -= share * (b - window_tokens) * (b - window_tokens + 1) / 2
        max_running = max(max_running, n_run + len(admitted))
        context = sum_base + n_run * step - sum_at
        if win_n:  # windowed layers read only the window of requests past it
            context -= share * (win_base + win_n * (step - window_tokens) - win_at)
        t, e = step_cost(float(new_tokens), float(pairs), float(n_run), float(context), float(len(admitted)))
        now += t
        busy_s += t
        busy_energy += e
        step_end_s.append(now)
        energy_per_token_j.append(e / (new_tokens + n_run))
        used -= released
        for r in admitted:
            if not produced[r]:
                ttft[r] = now - arrivals[r]
                first[r] = now
                if slo is not None and online_l[r] and ttft[r] > slo.ttft_s:
                    violations += 1
            left = outputs[r] - produced[r]
            if left == 1:
                finish[r] = now
                used -= pages_of(base[r])
                close(r, step)
            else:
                heapq.heappush(running, (step + left - 1, r, epoch[r]))
                recent.append((r, epoch[r]))
                n_run += 1
                sum_base += base[r]
                sum_at += step
                c = (step + 1 - base[r]) % page_tokens
                if share and base[r] > held_cap_tokens:  # its pages are past the window already
                    past_pages[r] = True
                    crossing_past[c] += 1
                else:
                    crossing[c] += 1
                    if share:  # its held tokens pass held_cap_tokens in step `step + held_cap_tokens - base + 1`
                        heapq.heappush(events, (step + held_cap_tokens - base[r] + 1, 1, r, epoch[r]))
                if share:  # its context (base + k - step in step k) passes the window in that step
                    heapq.heappush(events, (max(step + 1, step + window_tokens - base[r] + 1), 0, r, epoch[r]))
        while running and running[0][0] <= step:
            _, r, ep = heapq.heappop(running)
            if ep != epoch[r]:
                continue
            epoch[r] += 1
            finish[r] = now
            n_run -= 1
            sum_base -= base[r]
            sum_at -= admitted_at[r]
            used -= pages_of(base[r] + step - admitted_at[r])
            leave_window(r, (admitted_at[r] + 1 - base[r]) % page_tokens)
            close(r, step)
        step += 1
        if abort_violations is not None and violations > abort_violations:
            aborted = True
            break
        if horizon_s is not None and now - start > horizon_s:
            aborted = True
            break
    for _, r, ep in running:  # cut short: what ran so far still counts for energy and token times
        if ep == epoch[r]:
            close(r, step - 1)
    return _result(order, np.array(ttft), np.array(first), np.array(finish), np.array(outputs), online, busy_energy,
                   idle_energy, busy_s, now - start, aborted, preemptions, max_running, np.array(step_end_s),
                   np.array(energy_per_token_j),
                   np.array([seg_request, seg_first, seg_last, seg_prefill], dtype=int))


def _pairs_fit(tokens: int, requests) -> bool:
    """Whether `requests` prompts of `tokens` tokens each have their causal pairs summed within int64."""
    return tokens * (tokens + 1) // 2 * int(requests) < 1 << 62


def _decode_stretch(cost, step, until, n_run, used, pages_total, crossing, crossing_past, unit, past_unit, share,
                    sum_base, sum_at, win_n, win_base, win_at, window_tokens, now, busy_s, busy_energy, start,
                    horizon_s, next_arrival_s, step_end_s, energy_per_token_j):
    """Decode-only steps `step`..`until - 1` as arrays: the per-step loop's arithmetic elementwise, its
    running sums accumulated in the same order (numpy's accumulate adds left to right), so the
    results are the loop's to the bit. Stops after the step that ends at or past `next_arrival_s`
    (the next step admits it) or past the horizon, and before a step that must preempt. Returns the
    steps run, the new clock, busy time and energy, pages used, and whether the horizon was passed."""
    steps = np.arange(step, until)
    cls = steps % len(crossing)
    need = np.asarray(crossing)[cls] * unit
    if share:
        need = need + past_unit * np.asarray(crossing_past)[cls]
    used_before = used + np.cumsum(need) - need
    k = len(steps)
    if n_run > 1:
        short = need > pages_total - used_before
        if short.any():
            k = int(np.argmax(short))
    if k == 0:
        return 0, now, busy_s, busy_energy, used, False
    steps, need = steps[:k], need[:k]
    context = sum_base + n_run * steps - sum_at
    if win_n:
        context = context - share * (win_base + win_n * (steps - window_tokens) - win_at)
    t, e = cost.time_energy(0.0, 0.0, float(n_run), context.astype(float), 0.0)
    t, e = np.broadcast_to(t, steps.shape), np.broadcast_to(e, steps.shape)
    ends = np.add.accumulate(np.concatenate([[now], t]))[1:]
    aborted = False
    if next_arrival_s <= ends[-1]:
        k = int(np.searchsorted(ends, next_arrival_s, side="left")) + 1
    if horizon_s is not None:
        over = ends[:k] - start > horizon_s
        if over.any():
            k, aborted = int(np.argmax(over)) + 1, True
    step_end_s.extend(ends[:k].tolist())
    energy_per_token_j.extend((e[:k] / n_run).tolist())
    busy_s = float(np.add.accumulate(np.concatenate([[busy_s], t[:k]]))[-1])
    busy_energy = float(np.add.accumulate(np.concatenate([[busy_energy], e[:k]]))[-1])
    return k, float(ends[k - 1]), busy_s, busy_energy, used + int(need[:k].sum()), aborted


def _result(order, ttft, first, finish, output, online, busy_energy, idle_energy, busy_s, span_s, aborted,
            preemptions, max_running, step_end_s, energy_per_token_j, segs) -> SimResult:
    """Per-request energy from prefix sums over steps, and everything back in input order."""
    n = len(order)
    request, first_step, last_step, prefilled = segs
    cum_j = np.concatenate([[0.0], np.cumsum(energy_per_token_j)])
    # An admission prefills its tokens in its first step and decodes one token in each later one.
    prefill_j = np.bincount(request, prefilled * energy_per_token_j[first_step], minlength=n)
    decode_j = np.bincount(request, cum_j[last_step + 1] - cum_j[first_step + 1], minlength=n)
    tpot = np.where(output > 1, (finish - first) / np.maximum(output - 1, 1), np.nan)
    inverse = np.empty(n, int)
    inverse[order] = np.arange(n)
    return SimResult(ttft[inverse], tpot[inverse], finish[inverse], online[inverse], busy_energy, idle_energy, busy_s,
                     span_s, aborted, preemptions=preemptions, max_running=max_running,
                     prefill_energy_j=prefill_j[inverse], decode_energy_j=decode_j[inverse], step_end_s=step_end_s,
                     segments=np.stack([order[request], first_step, last_step], axis=1))
