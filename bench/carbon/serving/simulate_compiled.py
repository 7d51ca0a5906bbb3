"""The simulation's step loop compiled with numba: `simulate.py`'s full per-step loop, the same
arithmetic in the same order, so its results are the Python loop's to the bit (a test holds them
equal on every step-model path, with preemptions, sliding windows, a horizon and early aborts).

Why: verifying a plan simulates every distinct hour of it on every replica; a year of a day-long
trace whose hours differ in the offline work moved to clean ones is hundreds of simulations of
~250k steps, where the Python loop's ~1 us a step is most of the plan's time. Compiled, a step
takes tens of nanoseconds. Only the datasheet step model (`StepCost` without measured parts) is
compiled; composed steps and stand-ins run the Python loop. Without numba, everything does.
The compiled code is cached on disk (`cache=True`), so only a process's first call after an
install or an edit compiles it (about 12 s on a 2-core machine); `warm()` does that before the
planner forks its workers, and processes started together (a sweep's jobs, test workers) compile it
once: the first holds a lock file beside the cache while it compiles, the others then load it.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

log = logging.getLogger(__name__)

# pages_total when KV takes no memory: larger than any count of pages, small enough not to overflow.
NO_PAGE_LIMIT = 1 << 60
# The step model's coefficients, in this order (`coefficients`).
COEF = ("f_tok", "f_samp", "f_pair", "f_ctx", "b_step", "b_ctx", "b_new", "rate", "bw", "kv_bw", "overhead",
        "e_flop", "e_byte", "p0", "e_kv_extra", "headroom_w", "seq_s", "e_seq", "b_experts", "keep", "b_state")


@functools.cache
def available() -> bool:
    """Whether the compiled loop runs here: numba imports and the loop compiles (or loads from the
    disk cache). numba is imported here, not with the module, so a run that simulates nothing never
    pays for it; if compiling fails, the Python loop runs, with a warning."""
    try:
        from numba import njit
    except ImportError:
        return False
    g = globals()
    try:
        with compiling_alone():
            # Each helper becomes a compiled function under its own name, so `_loop` calls the compiled one.
            # Cached on disk; where numba finds nowhere to write its cache, compiled in every process.
            try:
                compiled = {name: njit(cache=True, error_model="numpy")(f) for name, f in PYTHON_LOOP.items()}
            except RuntimeError:
                compiled = {name: njit(error_model="numpy")(f) for name, f in PYTHON_LOOP.items()}
            g.update(compiled)
            run(np.zeros(1), np.ones(1, np.int64), np.ones(1, np.int64), np.ones(1, bool), _probe_cost(), 1, 0, 16,
                NO_PAGE_LIMIT, 1, 1, 0.0, 0, 16, 1, 0, 1, None, None, None)
    except Exception as err:  # noqa: BLE001 - any compile failure: the Python loop, which is exact too
        g.update(PYTHON_LOOP)
        log.warning("the compiled simulation loop is unavailable (%s: %s); simulating in Python, about 15x slower",
                    type(err).__name__, err)
        return False
    return True


@contextlib.contextmanager
def compiling_alone():
    """Hold a lock file beside numba's cache (this module's `__pycache__`, or `NUMBA_CACHE_DIR`)
    while compiling: a process that starts while another compiles waits, then loads what it cached,
    instead of compiling the same loop beside it. Without a writable folder, `fcntl` or locks on the
    file system, no lock: each process compiles its own, as before."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    folder = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(__file__).parent / "__pycache__")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / "simulate_compiled.lock", "a")
    except OSError:
        yield
        return
    with lock:
        try:  # released when the file closes, or by the OS if this process dies
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process compiling the simulation loop, to load its cache")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
            except OSError:  # locks unsupported after all: compile without one
                pass
        except OSError:  # a file system without locks (NFS without lockd, Lustre without flock)
            pass
        yield


def fits(cost) -> bool:
    """Whether the compiled loop gives the Python loop's results for this step model: not where a
    division by zero raises in Python (no power headroom, an all-reduce tail of no bandwidth), which
    compiled code would carry on with as inf."""
    d = cost.device
    return (d.power_cap_w - d.p0_w > 0 and d.flop_per_s > 0 and d.bytes_per_s > 0
            and (not d.kv_bytes_per_s or d.kv_bytes_per_s > 0) and (not d.allreduce or d.allreduce[2] > 0))


def warm() -> bool:
    """Compile (or load) the loop now, e.g. before forking workers that would each compile it."""
    return available()


def coefficients(cost) -> np.ndarray:
    """`StepCost.scalar`'s closure constants as an array, in `COEF` order."""
    d = cost.device
    return np.array([cost.flop_per_token, cost.flop_per_sampled_token, cost.flop_per_prefill_pair,
                     cost.flop_per_context_token, cost.bytes_per_step, cost.bytes_per_context_token,
                     cost.bytes_per_new_token, d.flop_per_s, d.bytes_per_s, d.kv_bytes_per_s or 0.0, d.overhead_s,
                     d.e_flop_j, d.e_byte_j, d.p0_w,
                     (d.e_kv_byte_j - d.e_byte_j) * cost.bytes_per_context_token if d.e_kv_byte_j else 0.0,
                     d.power_cap_w - d.p0_w, d.seq_s, d.e_seq_j, cost.expert_bytes, 1.0 - cost.expert_share,
                     cost.bytes_per_sampled_seq], float)


def _step(new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs, c, comm_sizes, comm_times,
          comm_tail, comm_per_step, comm_bytes_per_token):
    """`StepCost.scalar`'s `step` (and its all-reduce `comm`), line for line."""
    f_tok, f_samp, f_pair, f_ctx = c[0], c[1], c[2], c[3]
    b_step, b_ctx, b_new = c[4], c[5], c[6]
    rate, bw, kv_bw, overhead = c[7], c[8], c[9], c[10]
    e_flop, e_byte, p0, e_kv_extra, headroom_w = c[11], c[12], c[13], c[14], c[15]
    seq_s, e_seq = c[16], c[17]
    b_experts, keep, b_state = c[18], c[19], c[20]
    tokens = new_tokens + decode_tokens
    sampled = decode_tokens + prefill_seqs
    flops = f_tok * tokens + f_samp * sampled + f_pair * prefill_pairs + f_ctx * context_tokens
    weights = b_step + b_experts * (1.0 - keep ** tokens) if b_experts != 0.0 else b_step
    nbytes = weights + b_ctx * context_tokens + b_new * tokens
    streamed = weights + b_new * tokens
    if b_state != 0.0:
        nbytes = nbytes + b_state * sampled
        streamed = streamed + b_state * sampled
    if kv_bw != 0.0:
        linear = (f_tok * tokens + f_samp * sampled) / rate + streamed / bw
        attn_flop_s = (f_pair * prefill_pairs + f_ctx * context_tokens) / rate
        attn_kv_s = b_ctx * context_tokens / kv_bw
        t = linear + (attn_flop_s if attn_flop_s > attn_kv_s else attn_kv_s) + overhead
    else:
        flop_s, byte_s = flops / rate, nbytes / bw
        t = (flop_s if flop_s > byte_s else byte_s) + overhead
    if seq_s != 0.0:
        t = t + seq_s * sampled
    dynamic_j = e_flop * flops + e_byte * nbytes
    if e_kv_extra != 0.0:
        dynamic_j = dynamic_j + e_kv_extra * context_tokens
    if e_seq != 0.0:
        dynamic_j = dynamic_j + e_seq * sampled
    capped_s = dynamic_j / headroom_w
    if capped_s > t:
        t = capped_s
    m = len(comm_sizes)
    if m:
        b = tokens * comm_bytes_per_token
        last = m - 1
        if b <= comm_sizes[0]:
            comm = comm_per_step * (comm_times[0] + 0.0)
        elif b >= comm_sizes[last]:
            comm = comm_per_step * (comm_times[last] + (b - comm_sizes[last]) / comm_tail)
        else:
            i = np.searchsorted(comm_sizes, b, side="right")
            s0, t0 = comm_sizes[i - 1], comm_times[i - 1]
            value = t0 if b == s0 else (comm_times[i] - t0) / (comm_sizes[i] - s0) * (b - s0) + t0
            comm = comm_per_step * (value + 0.0)
        t = t + comm
    return t, dynamic_j + p0 * t


def _pages_of(held, page_tokens, unit, past_unit, share, held_cap_tokens, cap_pages, state_pages):
    p = -(-held // page_tokens)
    if held <= held_cap_tokens or share == 0.0:
        return p * unit + state_pages
    return past_unit * p + (unit - past_unit) * cap_pages + state_pages


# The growers copy element by element: a slice assignment compiles numba's shape-mismatch error
# (its message formatting: str, repr, join), 6 of the loop's 21 s of compiling.
def _grow_f(a, k):
    if k < len(a):
        return a
    b = np.empty(2 * len(a), a.dtype)
    for i in range(len(a)):
        b[i] = a[i]
    return b


def _grow_segs(a, k):
    if k < a.shape[1]:
        return a
    b = np.empty((a.shape[0], 2 * a.shape[1]), a.dtype)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            b[i, j] = a[i, j]
    return b


def _close(segs, k, r, first_step, last_step, prefilled):
    """`simulate`'s close(): one segment row (request, first step, last step, tokens prefilled)."""
    segs = _grow_segs(segs, k)
    segs[0, k] = r
    segs[1, k] = first_step
    segs[2, k] = last_step
    segs[3, k] = prefilled
    return segs, k + 1


def _leave_window(r, cc, past_pages, past_context, crossing, crossing_past, base, admitted_at, win_base, win_at,
                  win_n):
    """`simulate`'s leave_window(): request r (crossing class cc) out of the crossing counts and the
    window sums; returns the sums."""
    if past_pages[r]:
        crossing_past[cc] -= 1
        past_pages[r] = False
    else:
        crossing[cc] -= 1
    if past_context[r]:
        win_base -= base[r]
        win_at -= admitted_at[r]
        win_n -= 1
        past_context[r] = False
    return win_base, win_at, win_n


def _loop(arrivals, prompts, outputs, online, c, comm_sizes, comm_times, comm_tail, comm_per_step,
          comm_bytes_per_token, idle_w, max_batch, max_prefill_tokens, page_tokens, pages_total, unit, past_unit,
          share, window_tokens, held_cap_tokens, cap_pages, state_pages, watermark, slo_ttft_s, has_slo, abort_violations,
          horizon_s):
    """`simulate.py`'s loop with FAST_FORWARD off (to which its fast paths are equal). `abort_violations`
    < 0: none; `horizon_s` inf: none. Returns the per-request arrays, the totals, and the step and
    segment arrays."""
    n = len(arrivals)
    past_context = np.zeros(n, np.bool_)
    past_pages = np.zeros(n, np.bool_)
    crossing = np.zeros(page_tokens, np.int64)
    crossing_past = np.zeros(page_tokens, np.int64)
    win_base = 0
    win_at = 0
    win_n = 0
    ttft = np.full(n, np.nan)
    first = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    produced = np.zeros(n, np.int64)
    base = np.zeros(n, np.int64)
    admitted_at = np.zeros(n, np.int64)
    epoch = np.zeros(n, np.int64)
    # waiting: a ring buffer (a request waits at most once at a time); appendleft for the preempted
    wait_buf = np.empty(n + 1, np.int64)
    wait_head = 0
    wait_len = 0
    cap_w = n + 1
    events = [(np.int64(0), np.int64(0), np.int64(0), np.int64(0))]
    events.pop()
    running = [(np.int64(0), np.int64(0), np.int64(0))]
    running.pop()
    recent = [(np.int64(0), np.int64(0))]
    recent.pop()
    admitted = np.empty(min(max(max_batch, 1), n) + 1, np.int64)
    used = 0
    sum_base = 0
    sum_at = 0
    n_run = 0
    step_end_s = np.empty(1024, np.float64)
    ept = np.empty(1024, np.float64)
    k_steps = np.int64(0)  # (not a literal 0: numba would compile the helpers once more for its type)
    segs = np.empty((4, 256), np.int64)
    k_segs = np.int64(0)
    busy_energy = 0.0
    idle_energy = 0.0
    busy_s = 0.0
    start = arrivals[0]
    now = start
    nxt = 0
    step = np.int64(0)
    violations = 0
    aborted = False
    preemptions = 0
    max_running = 0
    while nxt < n or wait_len > 0 or len(running) > 0:
        while nxt < n and arrivals[nxt] <= now:
            wait_buf[(wait_head + wait_len) % cap_w] = nxt
            wait_len += 1
            nxt += 1
        if wait_len == 0 and len(running) == 0:
            idle_energy += idle_w * (arrivals[nxt] - now)
            now = arrivals[nxt]
            continue
        while len(events) > 0 and events[0][0] <= step:
            ev = heapq.heappop(events)
            kind, r, ep = ev[1], ev[2], ev[3]
            if ep != epoch[r]:
                continue
            if kind == 0:
                past_context[r] = True
                win_base += base[r]
                win_at += admitted_at[r]
                win_n += 1
            else:
                past_pages[r] = True
                cc = (admitted_at[r] + 1 - base[r]) % page_tokens
                crossing[cc] -= 1
                crossing_past[cc] += 1
        cls = step % page_tokens
        need = crossing[cls] * unit
        if share != 0.0:
            need += past_unit * crossing_past[cls]
        preempted = False
        while need > pages_total - used and n_run > 1:
            top = recent.pop()
            r, ep = top[0], top[1]
            if ep != epoch[r]:
                continue
            epoch[r] += 1
            held = base[r] + step - 1 - admitted_at[r]
            used -= _pages_of(held, page_tokens, unit, past_unit, share, held_cap_tokens, cap_pages, state_pages)
            cc = (admitted_at[r] + 1 - base[r]) % page_tokens
            if cc == cls:
                need -= past_unit if past_pages[r] else unit
            win_base, win_at, win_n = _leave_window(r, cc, past_pages, past_context, crossing, crossing_past, base,
                                                    admitted_at, win_base, win_at, win_n)
            n_run -= 1
            sum_base -= base[r]
            sum_at -= admitted_at[r]
            segs, k_segs = _close(segs, k_segs, r, admitted_at[r], step - 1, base[r])  # close(r, step - 1)
            produced[r] += step - admitted_at[r]
            wait_head = (wait_head - 1) % cap_w
            wait_buf[wait_head] = r
            wait_len += 1
            preemptions += 1
            preempted = True
        used += need
        new_tokens = 0
        pairs_i = 0
        pairs_f = 0.0
        pairs_is_float = False
        n_adm = 0
        released = 0
        while not preempted and wait_len > 0 and n_run + n_adm < max_batch:
            r = wait_buf[wait_head]
            b = prompts[r] + produced[r]
            pages = -(-b // page_tokens) * unit + state_pages
            if used + pages + watermark > pages_total and (n_run > 0 or n_adm > 0):
                break
            if max_prefill_tokens > 0 and n_adm > 0 and new_tokens + b > max_prefill_tokens:
                break
            wait_head = (wait_head + 1) % cap_w
            wait_len -= 1
            admitted[n_adm] = r
            n_adm += 1
            used += pages
            released += pages - _pages_of(b, page_tokens, unit, past_unit, share, held_cap_tokens, cap_pages, state_pages)
            base[r] = b
            admitted_at[r] = step
            new_tokens += b
            term = b * (b + 1) // 2
            if pairs_is_float:
                pairs_f = pairs_f + term
            else:
                pairs_i += term
            if share != 0.0 and b > window_tokens:
                if not pairs_is_float:
                    pairs_f = float(pairs_i)
                    pairs_is_float = True
                pairs_f = pairs_f - share * (b - window_tokens) * (b - window_tokens + 1) / 2
        if n_run + n_adm > max_running:
            max_running = n_run + n_adm
        context_i = sum_base + n_run * step - sum_at
        context = float(context_i)
        if win_n != 0:
            context = context_i - share * (win_base + win_n * (step - window_tokens) - win_at)
        pairs = pairs_f if pairs_is_float else float(pairs_i)
        t, e = _step(float(new_tokens), pairs, float(n_run), context, float(n_adm), c, comm_sizes, comm_times,
                     comm_tail, comm_per_step, comm_bytes_per_token)
        now += t
        busy_s += t
        busy_energy += e
        step_end_s = _grow_f(step_end_s, k_steps)
        ept = _grow_f(ept, k_steps)
        step_end_s[k_steps] = now
        ept[k_steps] = e / (new_tokens + n_run)
        k_steps += 1
        used -= released
        for a in range(n_adm):
            r = admitted[a]
            if produced[r] == 0:
                ttft[r] = now - arrivals[r]
                first[r] = now
                if has_slo and online[r] and ttft[r] > slo_ttft_s:
                    violations += 1
            left = outputs[r] - produced[r]
            if left == 1:
                finish[r] = now
                used -= _pages_of(base[r], page_tokens, unit, past_unit, share, held_cap_tokens, cap_pages, state_pages)
                segs, k_segs = _close(segs, k_segs, r, admitted_at[r], step, base[r])
            else:
                heapq.heappush(running, (step + left - 1, r, epoch[r]))
                recent.append((r, epoch[r]))
                n_run += 1
                sum_base += base[r]
                sum_at += step
                cc = (step + 1 - base[r]) % page_tokens
                if share != 0.0 and base[r] > held_cap_tokens:
                    past_pages[r] = True
                    crossing_past[cc] += 1
                else:
                    crossing[cc] += 1
                    if share != 0.0:
                        heapq.heappush(events, (step + held_cap_tokens - base[r] + 1, np.int64(1), r, epoch[r]))
                if share != 0.0:
                    heapq.heappush(events, (max(step + 1, step + window_tokens - base[r] + 1), np.int64(0), r,
                                            epoch[r]))
        while len(running) > 0 and running[0][0] <= step:
            top3 = heapq.heappop(running)
            r, ep = top3[1], top3[2]
            if ep != epoch[r]:
                continue
            epoch[r] += 1
            finish[r] = now
            n_run -= 1
            sum_base -= base[r]
            sum_at -= admitted_at[r]
            used -= _pages_of(base[r] + step - admitted_at[r], page_tokens, unit, past_unit, share, held_cap_tokens,
                              cap_pages, state_pages)
            cc = (admitted_at[r] + 1 - base[r]) % page_tokens
            win_base, win_at, win_n = _leave_window(r, cc, past_pages, past_context, crossing, crossing_past, base,
                                                    admitted_at, win_base, win_at, win_n)
            segs, k_segs = _close(segs, k_segs, r, admitted_at[r], step, base[r])
        step += 1
        if abort_violations >= 0 and violations > abort_violations:
            aborted = True
            break
        if now - start > horizon_s:
            aborted = True
            break
    for item in running:  # cut short: what ran so far still counts
        r, ep = item[1], item[2]
        if ep == epoch[r]:
            segs, k_segs = _close(segs, k_segs, r, admitted_at[r], step - 1, base[r])
    return (ttft, first, finish, busy_energy, idle_energy, busy_s, now - start, aborted, preemptions, max_running,
            step_end_s[:k_steps].copy(), ept[:k_steps].copy(), segs[:, :k_segs].copy())


def run(arrivals: list, prompts: list, outputs: list, online: np.ndarray, cost, max_batch: int,
        max_prefill_tokens: int, page_tokens: int, pages_total, unit: int, past_unit: int, share: float,
        window_tokens: int, held_cap_tokens: int, cap_pages: int, state_pages: int, watermark: int, slo, abort_violations,
        horizon_s):
    """The compiled loop (where `available()`) on `simulate`'s prepared inputs; returns what
    `simulate._result` takes."""
    d = cost.device
    if d.allreduce:
        sizes, times, tail = d.allreduce
        comm = (np.asarray(sizes, float), np.asarray(times, float), float(tail))
    else:
        comm = (np.zeros(0), np.zeros(0), 1.0)
    # Caps past what a run can reach are no caps: clamped into int64, the same run (a batch never holds
    # more than the n requests, a step never prefills more than all their tokens, at most n can miss;
    # `simulate` has clamped the pages already).
    n = len(arrivals)
    max_batch = min(max_batch, n + 1)
    # (a fractional cap: a sum of whole prompts exceeds x exactly when it exceeds floor(x), or 1 below 1)
    max_prefill_tokens = (0 if math.isinf(max_prefill_tokens) or not max_prefill_tokens
                          else max(1, math.floor(min(max_prefill_tokens, 1 << 62))))
    abort_violations = None if abort_violations is None else math.floor(min(abort_violations, n + 1))
    return _loop(np.asarray(arrivals, np.float64), np.asarray(prompts, np.int64), np.asarray(outputs, np.int64),
                 np.asarray(online, np.bool_), coefficients(cost), comm[0], comm[1], comm[2],
                 int(cost.allreduces_per_step), float(cost.allreduce_bytes_per_token), float(d.idle_w), int(max_batch),
                 int(max_prefill_tokens), int(page_tokens),
                 int(pages_total), int(unit), int(past_unit),
                 float(share), int(window_tokens), int(held_cap_tokens), int(cap_pages), int(state_pages), int(watermark),
                 float(slo.ttft_s) if slo is not None else math.inf, slo is not None,
                 -1 if abort_violations is None else int(abort_violations),
                 math.inf if horizon_s is None else float(horizon_s))


def _probe_cost():
    """A step model of ones: enough to compile the loop for `warm`."""
    device = SimpleNamespace(flop_per_s=1.0, bytes_per_s=1.0, kv_bytes_per_s=0.0, overhead_s=0.0, e_flop_j=0.0,
                             e_byte_j=0.0, e_kv_byte_j=0.0, p0_w=0.0, power_cap_w=math.inf, idle_w=0.0, allreduce=(),
                             seq_s=0.0, e_seq_j=0.0)
    return SimpleNamespace(flop_per_token=1.0, flop_per_sampled_token=0.0, flop_per_prefill_pair=0.0,
                           flop_per_context_token=0.0, bytes_per_step=1.0, bytes_per_context_token=0.0,
                           bytes_per_new_token=0.0, allreduces_per_step=0, allreduce_bytes_per_token=0.0, device=device,
                           expert_bytes=0.0, expert_share=0.0, bytes_per_sampled_seq=0.0)


# The Python functions `available()` compiles, kept to compile from and to fall back on.
PYTHON_LOOP = {f.__name__: f for f in (_step, _pages_of, _grow_f, _grow_segs, _close, _leave_window, _loop)}
