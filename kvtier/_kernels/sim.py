"""The simulator's engine over arrays: replicas that schedule steps, as vLLM v1 does.

Wrapped by ``kvtier.sim`` (``kvtier.sim.engine`` documents the model); imports only other
kernels and numpy. The engine's inputs travel as four named records, each documented
once below: ``SimTrace`` (the requests), ``SimHardware`` (one replica's tiers, links and
time model), ``SimSchedule`` (the scheduler's knobs) and ``SimCache`` (every replica's
cache state, stacked); ``SimOutput`` receives the results.

The cache is the replay core's (``kvtier._kernels.replay.access``, the step
``replay_trace`` takes for every block), over dense block ids, one state per replica: a
test holds the simulator's hits, evictions, demotions and promotions to the replay
engine's, access by access, in the order ``SimOutput.order`` records. Step times come
from ``kvtier._kernels.timing.batch_step_s``, plans from ``price_request``; the ready
queue is ``kvtier._kernels.heap``'s.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from kvtier._kernels.counters import C_DEMOTIONS
from kvtier._kernels.heap import heap_push, heap_remove
from kvtier._kernels.jit import njit
from kvtier._kernels.policy import NEVER
from kvtier._kernels.replay import access
from kvtier._kernels.timing import batch_step_s, price_request, to_ns

#: The requests, by trace row. ``offsets``/``ids``: each row's input blocks then the
#: blocks its output completes (dense ids); ``n_price``: whole input blocks (the prefix
#: the planner prices); ``in_tokens``/``out_tokens``; ``ready0``: ns a row with no
#: dependencies is ready; ``dep_count`` and the children CSR (``child_offsets``,
#: ``child_rows``, ``child_delay_ns``, ``child_dispatch``: the child waits for this row's
#: dispatch instead of its completion); ``next_use`` per access (Belady's future, or
#: empty); ``route``: each row's session rank (session affinity: its replica is the rank
#: mod the replicas it may go to) or -1 (round robin);
#: ``new_plan_s``: the planner's price of prefilling the row's new tokens
#: (``kvtier.cost.recompute_time_s``); ``new_attn_s``: their attention compute alone (s).
SimTrace = namedtuple("SimTrace", (
    "offsets", "ids", "n_price", "in_tokens", "out_tokens", "ready0", "dep_count", "child_offsets", "child_rows",
    "child_delay_ns", "child_dispatch", "next_use", "route", "new_plan_s", "new_attn_s"))

#: One replica (every replica is alike). Per tier ``t`` (0 = compute tier): the read path
#: to the compute tier ``tier_bw``/``tier_lat``, its link ``tier_link`` (index into the
#: replica's ``num_links`` links) and the write path ``tier_wbw``/``tier_wlat``.
#: ``kv0_bytes``: compute-tier room for KV after the weights; ``block_bytes``,
#: ``kv_token_bytes``. ``stage``: the step's time model (``kvtier._kernels.timing.StageModel``).
#: Prefix block ``i`` costs the planner ``block_plan_s[i]`` to recompute, of which
#: ``block_attn_s[i]`` is attention; a token's attention costs ``attn_token_s`` per token
#: of context (seconds at one stage).
SimHardware = namedtuple("SimHardware", (
    "tier_bw", "tier_lat", "tier_link", "tier_wbw", "tier_wlat", "num_links", "kv0_bytes", "block_bytes",
    "kv_token_bytes", "stage", "block_plan_s", "block_attn_s", "attn_token_s"))

#: The scheduler: ``replicas``; per step at most ``max_tokens`` tokens
#: (``max_num_batched_tokens``) of at most ``max_seqs`` running requests
#: (``max_num_seqs``); ``chunked``: a prefill may take part of the budget (else it waits
#: for a step with room for all of it); ``swap``: preempt by swapping KV to tier 1
#: (else by recompute); ``stream_all``: admit without waiting for room and stream what
#: does not fit (``residency="stream"``); the planner (``planner``, ``subsets``,
#: ``threshold_tokens``, ``layerwise``); ``block_tokens``. Disaggregated serving (the
#: Mooncake / Dynamo design): with ``prefill_replicas`` > 0 the first that many replicas
#: only prefill; a prompt's KV then moves to a decode replica (``route`` gives the prefill
#: replica; the decode one is the next of the others in turn) over a transfer path of
#: ``xfer_bw`` bytes/s and ``xfer_lat`` s per transfer, one queue per decode replica.
SimSchedule = namedtuple("SimSchedule", (
    "replicas", "max_tokens", "max_seqs", "chunked", "swap", "stream_all", "planner", "subsets", "threshold_tokens",
    "layerwise", "block_tokens", "prefill_replicas", "xfer_bw", "xfer_lat"))

#: Each replica's cache state (``kvtier._kernels.replay.cache_state`` and
#: ``kvtier.replay.policy_state``), stacked on a leading replica axis; ``caps`` slots per
#: tier, ``costs`` (cost-aware), ``counters`` (replay's per-tier counters, summed over
#: replicas).
SimCache = namedtuple("SimCache", (
    "caps", "I", "K", "F", "M", "so", "free", "free_top", "loc_vals", "loc_shift", "slot_key", "slot_tier",
    "slot_depth", "slot_next", "chain", "costs", "counters"))

#: Results: ``req_i``/``req_f`` (columns ``O_*``/``F_*``), per row and tier ``tier_hits``,
#: ``fetch_blocks``, ``occupancy`` (tier blocks held after its lookup), per replica link
#: and direction ``link_bytes``/``link_busy_ns`` (read toward compute, write away), and
#: ``order`` (rows in cache-lookup order).
SimOutput = namedtuple("SimOutput", (
    "req_i", "req_f", "tier_hits", "fetch_blocks", "occupancy", "link_bytes", "link_busy_ns", "order"))

REGIME_RESIDENT = 0  # the turn's KV sat in the compute tier for its whole turn
REGIME_STREAMED = 1  # part of it was read over a link at every step
REGIME_OVERFLOW = 2  # it fits nowhere it can be read from: the request is not served

# Columns of the per-request int64 output.
O_DISPATCH = 0  # ns: the request is ready and reaches its replica's queue
O_START = 1  # ns: first admitted (its blocks looked up, its plan made)
O_FIRST_TOKEN = 2  # ns
O_END = 3  # ns: last output token
O_RECOMPUTE_BLOCKS = 4  # prefix blocks recomputed (missing or chosen)
O_MISSING_BLOCKS = 5  # prefix blocks found in no tier
O_SPLIT = 6  # the plan's split block
O_REGIME = 7
O_STREAM_BYTES = 8  # most bytes read over a link in one step (residency)
O_ROOM_WAIT = 9  # ns at the head of the queue waiting for compute-tier room
O_PREEMPTIONS = 10
O_REPLICA = 11
NUM_I_OUT = 12

# Columns of the per-request float64 output.
F_PLAN_TTFT = 0  # s: the plan's predicted TTFT (fetch + recompute, one stage's compute)
F_STEP = 1  # s: mean time per output token after the first (TPOT)
F_COMPUTE = 2  # s of prefill compute (one stage's rate)
F_SWAP_BYTES = 3  # bytes swapped out by preemption
F_XFER_BYTES = 4  # bytes moved from a prefill replica to a decode replica
NUM_F_OUT = 5


@njit(_nrt=False, inline="always")
def _pop(H, P, A, count):
    """Remove the earliest ``(time, row)`` of the ready queue; returns ``(time, row, count)``."""
    time = A[0]
    row = H[0]
    heap_remove(H, 0, P, 0, A, 0, H, 0, count, row)
    return time, row, count - 1


@njit(_nrt=False, inline="always")
def _take(left, budget, chunked, n_seq):
    """Prefill tokens a request gets this step: with chunked prefill, what the budget
    allows; without, all of them or none (all when it is alone, as an engine whose budget
    is at least the model's length would)."""
    if chunked:
        return left if left < budget else budget
    if left <= budget or n_seq == 0:
        return left
    return 0


@njit(_nrt=False)
def _book(free_at, busy_ns, nbytes_out, link, start, dur_s, nbytes):
    """Hold ``link`` for ``dur_s`` from ``start`` or when it is free; returns the end."""
    s0 = start if start > free_at[link] else free_at[link]
    d = to_ns(dur_s)
    free_at[link] = s0 + d
    busy_ns[link] += d
    nbytes_out[link] += nbytes
    return s0 + d


@njit(_nrt=False)
def _arrive(q, r, now, nxt, w_head, w_tail, busy, k_steps, t0, t_end, step_ns, w_nseq, w_tokens, w_kv, w_work,
            w_stream, w_ndec, w_ngrow, stage, kv_tok, attn_tok):
    """Row ``q`` joins replica ``r``'s queue at ``now``; the replica looks at it at its next
    step boundary: now when idle (after every arrival at now), else where a window of
    alike decode steps would pass now (the window priced anew for its new length)."""
    if w_tail[r] < 0:
        w_head[r] = q
    else:
        nxt[w_tail[r]] = q
    w_tail[r] = q
    if not busy[r] or k_steps[r] == 0:
        busy[r] = True
        k_steps[r] = 0
        t0[r] = now
        t_end[r] = now
    elif k_steps[r] > 1:
        k_new = (now - t0[r] + step_ns[r] - 1) // step_ns[r]
        if k_new < 1:
            k_new = 1
        while k_new < k_steps[r]:
            s_new = _price(stage, k_new, w_nseq[r], w_tokens[r], w_kv[r], w_work[r], w_stream[r], w_ndec[r],
                           w_ngrow[r], kv_tok, attn_tok)
            if t0[r] + k_new * s_new >= now:
                k_steps[r] = k_new
                step_ns[r] = s_new
                t_end[r] = t0[r] + k_new * s_new
                break
            k_new += 1


@njit(_nrt=False)
def _release(tr, q, at, dispatch, ready, remaining, rq_r, rq_p, rq_t, rq_n):
    """Row ``q`` was dispatched (``dispatch``) or completed at ``at``: its children waiting
    for that event get ``at`` + their delay; those with nothing left to wait for join the
    ready queue. Returns the queue's new size."""
    for j in range(tr.child_offsets[q], tr.child_offsets[q + 1]):
        if tr.child_dispatch[j] != dispatch:
            continue
        ch = tr.child_rows[j]
        cand = at + tr.child_delay_ns[j]
        if cand > ready[ch]:
            ready[ch] = cand
        remaining[ch] -= 1
        if remaining[ch] == 0:
            heap_push(rq_r, 0, rq_p, 0, rq_t, 0, rq_r, 0, rq_n, ch, ready[ch], ch)
            rq_n += 1
    return rq_n


# Slots of the step's batch accumulator (``_pack``).
_B_BUDGET = 0  # tokens left of max_num_batched_tokens
_B_SEQ = 1  # sequences in the step
_B_DEC = 2  # of which decodes
_B_GROW = 3  # of the decodes, those whose growth is streamed
_B_PF = 4  # prefill chunks
_B_KV = 5  # bytes of KV attention reads
_B_WORK = 6  # s of attention work
_B_STREAM = 7  # bytes streamed over tier 1's path
_B_MIN_LEFT = 8  # fewest output tokens a decode has left
_B_WAKE = 9  # ns the first fetch or swap-in of a request left out lands
_B_SIZE = 10


@njit(_nrt=False)
def _pack(q, now, bt, avail, chunk, pf_left, pf_attn, ctx, held, strm, sgrow, dec_left, chunked, stream_all, kv_tok,
          attn_tok):
    """Put request ``q`` into the step being packed at ``now`` (``bt``): a decode token, or
    a chunk of its prefill (``_take``), while the token budget lasts; a request whose KV
    has not landed yet only sets when the replica should look again (``_B_WAKE``)."""
    if avail[q] > now:
        if avail[q] < bt[_B_WAKE]:
            bt[_B_WAKE] = avail[q]
        return
    budget = np.int64(bt[_B_BUDGET])
    if budget <= 0:
        return
    if pf_left[q] > 0:
        c = _take(pf_left[q], budget, chunked, np.int64(bt[_B_SEQ]))
        if c <= 0:
            return
        chunk[q] = c
        bt[_B_BUDGET] -= c
        bt[_B_SEQ] += 1
        bt[_B_PF] += 1
        bt[_B_WORK] += pf_attn[q] * c / pf_left[q]
        bt[_B_KV] += (ctx[q] + c) * kv_tok
        bt[_B_STREAM] += strm[q]
        return
    chunk[q] = 1
    bt[_B_BUDGET] -= 1
    bt[_B_SEQ] += 1
    bt[_B_DEC] += 1
    if sgrow[q] or (stream_all and strm[q] > 0.0):
        bt[_B_GROW] += 1
    bt[_B_WORK] += attn_tok * ctx[q]
    bt[_B_KV] += held[q] + strm[q]
    bt[_B_STREAM] += strm[q]
    if dec_left[q] < bt[_B_MIN_LEFT]:
        bt[_B_MIN_LEFT] = dec_left[q]


@njit(_nrt=False)
def _price(st, k, nseq, tokens, kv, work, stream, ndec, ngrow, kv_tok, attn_tok):
    """A window of ``k`` alike steps priced at its middle (every decode's context, and the
    streamed part of the ``ngrow`` growing by streaming, ``(k-1)/2`` tokens on), in ns."""
    half = (k - 1) / 2.0
    s_ns = to_ns(batch_step_s(st, nseq, tokens, kv + ndec * kv_tok * half, work + ndec * attn_tok * half,
                              stream + ngrow * kv_tok * half))
    return s_ns if s_ns > 0 else np.int64(1)


@njit
def simulate_kernel(tr, hw, sc, ca, out):
    """Simulate every request of ``tr`` on ``sc.replicas`` replicas of ``hw``; see
    ``kvtier.sim.engine`` for the model. Returns the number of requests completed or
    found not servable (every row, unless a dependency cycle leaves some never ready)."""
    n_req = tr.ready0.shape[0]
    R = sc.replicas
    T = ca.caps.shape[0]
    L = hw.num_links
    B = sc.block_tokens
    kv_tok = hw.kv_token_bytes
    kv0 = hw.kv0_bytes
    has_next = tr.next_use.shape[0] == tr.ids.shape[0]
    no_record = np.zeros((0, T), dtype=np.int32)
    max_n = 1
    for q in range(n_req):
        if tr.n_price[q] + 1 > max_n:
            max_n = tr.n_price[q] + 1
    ti = np.empty(max_n, dtype=np.int64)
    scratch = np.empty((5, max_n), dtype=np.float64)
    scratch_cnt = np.empty((T, max_n), dtype=np.int64)
    busy_s = np.zeros(max(L, 1), dtype=np.float64)
    dem_before = np.zeros(T, dtype=np.int64)
    nl = max(L, 1) * R
    read_free = np.zeros(nl, dtype=np.int64)
    write_free = np.zeros(nl, dtype=np.int64)
    rd_busy = np.zeros(nl, dtype=np.int64)
    wr_busy = np.zeros(nl, dtype=np.int64)
    rd_bytes = np.zeros(nl, dtype=np.float64)
    wr_bytes = np.zeros(nl, dtype=np.float64)
    stream_link = hw.tier_link[1] if T > 1 else -1

    # per request
    nxt = np.full(n_req, -1, dtype=np.int64)
    pf_left = np.zeros(n_req, dtype=np.int64)  # prefill tokens still to compute
    pf_attn = np.zeros(n_req, dtype=np.float64)  # their attention compute, s at one stage
    dec_left = np.zeros(n_req, dtype=np.int64)  # output tokens still to generate
    ctx = np.zeros(n_req, dtype=np.int64)  # tokens whose KV exists
    held = np.zeros(n_req, dtype=np.float64)  # compute-tier bytes held
    strm = np.zeros(n_req, dtype=np.float64)  # bytes streamed per step
    avail = np.zeros(n_req, dtype=np.int64)  # ns its KV is in place (fetch, swap-in)
    fetch_end = np.zeros(n_req, dtype=np.int64)
    swapped = np.zeros(n_req, dtype=np.float64)
    swap_ready = np.zeros(n_req, dtype=np.int64)
    sgrow = np.zeros(n_req, dtype=np.bool_)  # its growth is streamed (it cannot grow in the compute tier)
    incoming = np.zeros(n_req, dtype=np.float64)  # KV bytes on their way from a prefill replica
    chunk = np.zeros(n_req, dtype=np.int64)  # tokens scheduled in the step in flight
    blocked = np.full(n_req, -1, dtype=np.int64)  # ns it started waiting for room at the head
    looked_up = np.zeros(n_req, dtype=np.bool_)
    # per replica: a FCFS queue (linked through ``nxt``), the running set in admission
    # order, the step in flight (``k`` steps of ``step_ns`` from ``t0``; ``k = 0``: an idle
    # wait for a fetch to land)
    w_head = np.full(R, -1, dtype=np.int64)
    w_tail = np.full(R, -1, dtype=np.int64)
    run = np.empty((R, sc.max_seqs), dtype=np.int64)
    run_n = np.zeros(R, dtype=np.int64)
    held_sum = np.zeros(R, dtype=np.float64)
    busy = np.zeros(R, dtype=np.bool_)
    t0 = np.zeros(R, dtype=np.int64)
    step_ns = np.zeros(R, dtype=np.int64)
    k_steps = np.zeros(R, dtype=np.int64)
    t_end = np.zeros(R, dtype=np.int64)
    # the window in flight's batch, to price it again when an arrival cuts it short
    w_nseq = np.zeros(R, dtype=np.int64)
    w_tokens = np.zeros(R, dtype=np.int64)
    w_kv = np.zeros(R, dtype=np.float64)
    w_work = np.zeros(R, dtype=np.float64)
    w_stream = np.zeros(R, dtype=np.float64)
    w_ndec = np.zeros(R, dtype=np.int64)
    w_ngrow = np.zeros(R, dtype=np.int64)

    rq_r = np.empty(n_req, dtype=np.int64)
    rq_p = np.empty(n_req, dtype=np.int64)
    rq_t = np.empty(n_req, dtype=np.int64)
    rq_n = 0
    remaining = tr.dep_count.copy()
    ready = tr.ready0.copy()
    for q in range(n_req):
        if remaining[q] == 0:
            heap_push(rq_r, 0, rq_p, 0, rq_t, 0, rq_r, 0, rq_n, q, ready[q], q)
            rq_n += 1
    P = sc.prefill_replicas
    n_entry = P if P > 0 else R  # the replicas requests arrive at
    xfer_free = np.zeros(R, dtype=np.int64)  # each decode replica's transfer path
    dr = 0
    rr = 0
    n_done = 0
    n_order = 0
    big = np.int64(1) << 62
    bt = np.zeros(_B_SIZE, dtype=np.float64)  # the step being packed (``_pack``)

    while True:
        # the next event: a request becoming ready (first at a tie) or a replica's step ending
        t_rq = rq_t[0] if rq_n > 0 else big
        r = -1
        t_r = big
        for x in range(R):
            if busy[x] and t_end[x] < t_r:
                t_r = t_end[x]
                r = x
        if rq_n == 0 and r < 0:
            break
        if t_rq <= t_r:
            now, q, rq_n = _pop(rq_r, rq_p, rq_t, rq_n)
            r = tr.route[q] % n_entry
            if tr.route[q] < 0:
                r = rr % n_entry
                rr += 1
            out.req_i[q, O_DISPATCH] = now
            out.req_i[q, O_REPLICA] = r
            _arrive(q, r, now, nxt, w_head, w_tail, busy, k_steps, t0, t_end, step_ns, w_nseq, w_tokens, w_kv,
                    w_work, w_stream, w_ndec, w_ngrow, hw.stage, kv_tok, hw.attn_token_s)
            rq_n = _release(tr, q, now, True, ready, remaining, rq_r, rq_p, rq_t, rq_n)
            continue
        else:
            now = t_r
            # ---- the step in flight ends: tokens land, turns finish
            busy[r] = False
            k = k_steps[r]
            r_off = r * max(L, 1)
            streamed = 0.0
            i = 0
            while i < run_n[r]:
                q = run[r, i]
                c = chunk[q]
                chunk[q] = 0
                finished = False
                s_before = strm[q]
                if c > 0 and pf_left[q] > 0:  # a prefill chunk
                    pf_attn[q] -= pf_attn[q] * c / pf_left[q]
                    pf_left[q] -= c
                    ctx[q] += c
                    if pf_left[q] == 0:  # the prompt is done: its step samples a token
                        dec_left[q] -= 1
                        first = now if now > fetch_end[q] else fetch_end[q]  # layer-wise: the last layer's KV
                        if out.req_i[q, O_FIRST_TOKEN] < 0:
                            out.req_i[q, O_FIRST_TOKEN] = first
                        if first > avail[q]:
                            avail[q] = first
                        finished = dec_left[q] <= 0
                        if not finished and r < P:
                            # disaggregated: its KV moves to a decode replica, which queues it
                            d = P + (dr % (R - P) if tr.route[q] < 0 else tr.route[q] % (R - P))
                            dr += 1
                            nbytes = held[q] + strm[q]
                            s0 = first if first > xfer_free[d] else xfer_free[d]
                            xfer_free[d] = s0 + to_ns(sc.xfer_lat + nbytes / sc.xfer_bw)
                            out.req_f[q, F_XFER_BYTES] += nbytes
                            incoming[q] = nbytes
                            avail[q] = xfer_free[d]
                            held_sum[r] -= held[q]
                            held[q] = 0.0
                            strm[q] = 0.0
                            sgrow[q] = False
                            for j in range(i, run_n[r] - 1):
                                run[r, j] = run[r, j + 1]
                            run_n[r] -= 1
                            out.req_i[q, O_REPLICA] = d
                            _arrive(q, d, now, nxt, w_head, w_tail, busy, k_steps, t0, t_end, step_ns, w_nseq,
                                    w_tokens, w_kv, w_work, w_stream, w_ndec, w_ngrow, hw.stage, kv_tok,
                                    hw.attn_token_s)
                            continue
                elif c > 0:  # k decode tokens
                    dec_left[q] -= k
                    ctx[q] += k
                    grow = k * kv_tok
                    if sgrow[q] and not sc.stream_all:
                        strm[q] += grow
                    elif sc.stream_all:
                        room = kv0 - held_sum[r]
                        if room < 0.0:
                            room = 0.0
                        take = grow if grow < room else room
                        held[q] += take
                        held_sum[r] += take
                        strm[q] += grow - take
                    else:
                        held[q] += grow
                        held_sum[r] += grow
                    finished = dec_left[q] <= 0
                if c > 0 and (s_before > 0.0 or strm[q] > 0.0):
                    # the steps streamed s_before, then one more step's growth each
                    inc = (strm[q] - s_before) / k
                    streamed += k * s_before + inc * k * (k - 1) / 2.0
                    last = s_before + inc * (k - 1)
                    if last > 0.0:
                        out.req_i[q, O_REGIME] = REGIME_STREAMED
                        if np.int64(last) > out.req_i[q, O_STREAM_BYTES]:
                            out.req_i[q, O_STREAM_BYTES] = np.int64(last)
                if finished:
                    end = now if now > out.req_i[q, O_FIRST_TOKEN] else out.req_i[q, O_FIRST_TOKEN]
                    out.req_i[q, O_END] = end
                    ntok = tr.out_tokens[q]
                    out.req_f[q, F_STEP] = (end - out.req_i[q, O_FIRST_TOKEN]) / 1e9 / (ntok - 1) if ntok > 1 else 0.0
                    held_sum[r] -= held[q]
                    held[q] = 0.0
                    for j in range(i, run_n[r] - 1):
                        run[r, j] = run[r, j + 1]
                    run_n[r] -= 1
                    n_done += 1
                    rq_n = _release(tr, q, end, False, ready, remaining, rq_r, rq_p, rq_t, rq_n)
                    continue
                i += 1
            if streamed > 0.0 and stream_link >= 0:  # what the steps read over the link, from their start
                _book(read_free, rd_busy, rd_bytes, r_off + stream_link, t0[r], streamed / hw.tier_bw[1], streamed)
        if busy[r]:
            continue

        # ---- schedule replica r's next step at ``now`` (vLLM v1: running first, then the queue)
        r_off = r * max(L, 1)
        # room for this step's decode tokens: preempt the newest running turn until it fits
        if not sc.stream_all:
            while True:
                grow = 0.0
                for i in range(run_n[r]):
                    q = run[r, i]
                    if pf_left[q] == 0 and avail[q] <= now and not sgrow[q]:
                        grow += kv_tok
                if held_sum[r] + grow <= kv0 or run_n[r] <= 1:
                    break
                v = run[r, run_n[r] - 1]
                run_n[r] -= 1
                held_sum[r] -= held[v]
                out.req_i[v, O_PREEMPTIONS] += 1
                if sc.swap and T > 1:
                    lk = r_off + hw.tier_link[1]
                    swap_ready[v] = _book(write_free, wr_busy, wr_bytes, lk, now,
                                          hw.tier_wlat[1] + held[v] / hw.tier_wbw[1], held[v])
                    swapped[v] = held[v]
                    out.req_f[v, F_SWAP_BYTES] += held[v]
                else:  # recompute: everything it holds is prefilled again
                    n_tok = ctx[v] + pf_left[v]
                    pf_left[v] = n_tok
                    pf_attn[v] = hw.attn_token_s * n_tok * n_tok / 2.0
                    ctx[v] = 0
                held[v] = 0.0
                strm[v] = 0.0
                sgrow[v] = False
                nxt[v] = w_head[r]
                w_head[r] = v
                if w_tail[r] < 0:
                    w_tail[r] = v
            # a lone turn that cannot grow streams its growth from the next tier
            if run_n[r] == 1 and T > 1:
                q = run[r, 0]
                if pf_left[q] == 0 and held_sum[r] + kv_tok > kv0:
                    sgrow[q] = True
        # the batch: n_seq sequences (n_dec decodes, n_grow of them growing by streaming,
        # n_pf prefill chunks), the KV they read, their attention work, what they stream
        bt[:] = 0.0
        bt[_B_BUDGET] = sc.max_tokens
        bt[_B_MIN_LEFT] = big
        bt[_B_WAKE] = big
        for i in range(run_n[r]):
            _pack(run[r, i], now, bt, avail, chunk, pf_left, pf_attn, ctx, held, strm, sgrow, dec_left, sc.chunked,
                  sc.stream_all, kv_tok, hw.attn_token_s)
        # admit from the queue, first come first served: stop at the first that cannot start
        while w_head[r] >= 0 and run_n[r] < sc.max_seqs and bt[_B_BUDGET] > 0:
            q = w_head[r]
            if not looked_up[q]:
                need = tr.in_tokens[q] * kv_tok  # the prompt's blocks, cached ones promoted and new ones
            elif incoming[q] > 0.0:
                need = incoming[q]  # from a prefill replica: its blocks are allocated before the transfer
            elif swapped[q] > 0.0:
                need = swapped[q]  # what it held when it was swapped out
            else:
                need = (ctx[q] + pf_left[q]) * kv_tok  # preempted by recompute: all of it again
            free_b = kv0 - held_sum[r] - (bt[_B_DEC] - bt[_B_GROW]) * kv_tok  # this step's decode tokens first
            if swapped[q] > 0.0 or incoming[q] > 0.0:
                free_b -= kv_tok  # and the token a swapped-in or transferred turn decodes next
            if free_b < 0.0:
                free_b = 0.0
            over = (tr.in_tokens[q] + tr.out_tokens[q]) * kv_tok > kv0 and T == 1
            take = need
            if over:
                take = -1.0  # fits nowhere it can be read from
            elif need > free_b:
                if sc.stream_all and T > 1:
                    take = free_b
                elif need > kv0 and T > 1 and run_n[r] == 0:
                    take = kv0  # alone and too big: hold what fits, stream the rest
                else:
                    if blocked[q] < 0:
                        blocked[q] = now
                    break
            w_head[r] = nxt[q]
            if w_head[r] < 0:
                w_tail[r] = -1
            nxt[q] = -1
            if blocked[q] >= 0:
                out.req_i[q, O_ROOM_WAIT] += now - blocked[q]
                blocked[q] = -1
            if not looked_up[q]:
                # the cache: the replay core's access over this row's blocks
                looked_up[q] = True
                out.order[n_order] = q
                n_order += 1
                out.req_i[q, O_START] = now
                for t in range(T):
                    dem_before[t] = ca.counters[t, C_DEMOTIONS]
                start = tr.offsets[q]
                n_in = tr.n_price[q]
                prefix = True
                for kk in range(start, tr.offsets[q + 1]):
                    t = access(np.uint64(tr.ids[kk]), kk - start, tr.next_use[kk] if has_next else NEVER, prefix, kk, T,
                               ca.I[r], ca.K[r], ca.F[r], ca.M[r], ca.loc_vals[r], ca.loc_shift, ca.so[r],
                               ca.slot_key[r], ca.slot_tier[r], ca.slot_depth[r], ca.slot_next[r], ca.free[r],
                               ca.free_top[r], ca.chain[r], ca.costs, ca.counters, no_record, True, False, True, True,
                               has_next, True)
                    prefix = prefix and t >= 0
                    if kk - start < n_in:
                        ti[kk - start] = t
                        if t >= 0:
                            out.tier_hits[q, t] += 1
                for t in range(T):
                    out.occupancy[q, t] = ca.caps[t] - ca.free_top[r, t]
                missing = 0
                for x in range(n_in):
                    if ti[x] < 0:
                        missing += 1
                out.req_i[q, O_MISSING_BLOCKS] = missing
                # demotions this lookup caused are written down their tier's path in the background
                for t in range(1, T):
                    moved = ca.counters[t - 1, C_DEMOTIONS] - dem_before[t - 1]
                    if moved > 0:
                        _book(write_free, wr_busy, wr_bytes, r_off + hw.tier_link[t], now,
                              hw.tier_wlat[t] + moved * hw.block_bytes / hw.tier_wbw[t], moved * hw.block_bytes)
                if take < 0.0:
                    out.req_i[q, O_REGIME] = REGIME_OVERFLOW
                    out.req_i[q, O_FIRST_TOKEN] = -1
                    out.req_i[q, O_END] = -1
                    n_done += 1
                    rq_n = _release(tr, q, now, False, ready, remaining, rq_r, rq_p, rq_t, rq_n)
                    continue
                # plan: fetch or recompute each prefix block; fetches queue on the replica's links
                for lk in range(L):
                    busy_s[lk] = (read_free[r_off + lk] - now) / 1e9 if read_free[r_off + lk] > now else 0.0
                ttft_s, split, mask = price_request(ti, n_in, sc.planner, sc.subsets, sc.threshold_tokens, B,
                                                    hw.block_plan_s, tr.new_plan_s[q], hw.tier_bw, hw.tier_lat,
                                                    hw.tier_link, L, busy_s, hw.block_bytes, hw.stage.num_layers,
                                                    sc.layerwise, scratch_cnt, scratch)
                recompute = 0
                comp = tr.new_plan_s[q]
                attn = tr.new_attn_s[q]
                for x in range(n_in):
                    t = ti[x]
                    if t == 0:
                        continue
                    if t > 0 and x >= split and (mask >> t) & 1:
                        out.fetch_blocks[q, t] += 1
                    else:
                        recompute += 1
                        comp += hw.block_plan_s[x]
                        attn += hw.block_attn_s[x]
                land = now
                first_layer = now
                for lk in range(L):
                    dur = 0.0
                    nbytes = 0.0
                    for t in range(1, T):
                        if hw.tier_link[t] == lk and out.fetch_blocks[q, t] > 0:
                            dur += hw.tier_lat[t] + out.fetch_blocks[q, t] * hw.block_bytes / hw.tier_bw[t]
                            nbytes += out.fetch_blocks[q, t] * hw.block_bytes
                    if nbytes > 0.0:
                        e = _book(read_free, rd_busy, rd_bytes, r_off + lk, now, dur, nbytes)
                        if e > land:
                            land = e
                        f = e - to_ns(dur) + to_ns(dur / hw.stage.num_layers)
                        if f > first_layer:
                            first_layer = f
                fetch_end[q] = land
                avail[q] = first_layer if sc.layerwise else land
                out.req_i[q, O_RECOMPUTE_BLOCKS] = recompute
                out.req_i[q, O_SPLIT] = split
                out.req_f[q, F_PLAN_TTFT] = ttft_s
                out.req_f[q, F_COMPUTE] = comp
                pf_left[q] = recompute * B + (tr.in_tokens[q] - n_in * B if tr.in_tokens[q] > n_in * B else 1)
                pf_attn[q] = attn
                ctx[q] = tr.in_tokens[q] - pf_left[q] if tr.in_tokens[q] > pf_left[q] else 0
                dec_left[q] = tr.out_tokens[q] if tr.out_tokens[q] > 0 else 1
            elif incoming[q] > 0.0:  # its KV lands when the transfer ends (avail)
                incoming[q] = 0.0
            elif swapped[q] > 0.0:  # swapped out: read its KV back over tier 1's path
                lk = r_off + hw.tier_link[1]
                s_at = now if now > swap_ready[q] else swap_ready[q]
                avail[q] = _book(read_free, rd_busy, rd_bytes, lk, s_at, hw.tier_lat[1] + swapped[q] / hw.tier_bw[1],
                                 swapped[q])
                swapped[q] = 0.0
            else:
                avail[q] = now
            held[q] = take
            held_sum[r] += take
            strm[q] = need - take if need > take else 0.0
            sgrow[q] = strm[q] > 0.0 and not sc.stream_all
            run[r, run_n[r]] = q
            run_n[r] += 1
            _pack(q, now, bt, avail, chunk, pf_left, pf_attn, ctx, held, strm, sgrow, dec_left, sc.chunked,
                  sc.stream_all, kv_tok, hw.attn_token_s)
        n_seq = np.int64(bt[_B_SEQ])
        wake = np.int64(bt[_B_WAKE])
        if n_seq == 0:
            if wake < big:  # only fetches in flight: wait for the first to land
                busy[r] = True
                k_steps[r] = 0
                t0[r] = now
                t_end[r] = wake
            continue
        # how many steps run alike: a decode-only batch runs until its first turn ends, its
        # room runs out, or a fetch lands (an arrival ends the window early); else one step
        n_dec = np.int64(bt[_B_DEC])
        n_grow = np.int64(bt[_B_GROW])
        tokens = np.int64(sc.max_tokens - bt[_B_BUDGET])
        k = np.int64(1)
        if bt[_B_PF] == 0:
            k = np.int64(bt[_B_MIN_LEFT])
            if not sc.stream_all and n_dec > n_grow:
                k_mem = np.int64((kv0 - held_sum[r]) // ((n_dec - n_grow) * kv_tok))
                if k_mem < k:
                    k = k_mem
            if k < 1 or bt[_B_BUDGET] <= 0:
                k = 1
        s_ns = _price(hw.stage, k, n_seq, tokens, bt[_B_KV], bt[_B_WORK], bt[_B_STREAM], n_dec, n_grow, kv_tok,
                      hw.attn_token_s)
        if wake < big and k > 1:
            kw = (wake - now + s_ns - 1) // s_ns
            if kw < 1:
                kw = 1
            if kw < k:
                k = kw
                s_ns = _price(hw.stage, k, n_seq, tokens, bt[_B_KV], bt[_B_WORK], bt[_B_STREAM], n_dec, n_grow,
                              kv_tok, hw.attn_token_s)
        busy[r] = True
        k_steps[r] = k
        step_ns[r] = s_ns
        t0[r] = now
        t_end[r] = now + k * s_ns
        w_nseq[r] = n_seq
        w_tokens[r] = tokens
        w_kv[r] = bt[_B_KV]
        w_work[r] = bt[_B_WORK]
        w_stream[r] = bt[_B_STREAM]
        w_ndec[r] = n_dec
        w_ngrow[r] = n_grow

    for x in range(R):
        for lk in range(L):
            out.link_bytes[lk, 0] += rd_bytes[x * max(L, 1) + lk]
            out.link_bytes[lk, 1] += wr_bytes[x * max(L, 1) + lk]
            out.link_busy_ns[lk, 0] += rd_busy[x * max(L, 1) + lk]
            out.link_busy_ns[lk, 1] += wr_busy[x * max(L, 1) + lk]
    return n_done
