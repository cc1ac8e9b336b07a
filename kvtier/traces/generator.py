"""Synthetic coding-agent traces: agents in a "Ralph loop", seeded and deterministic.

Each agent runs the same loop (``CodingAgentConfig`` documents every knob, its default
and where the default comes from):

* its context starts with a **system prompt and tool definitions identical across all
  agents**, then **repository context** (files read at start: identical for agents on the
  same repository), the loop's **task prompt** (the same every iteration) and a **progress
  file** (rewritten each iteration);
* a **turn** is one request on the whole context; the model's output (code, edits) and
  then a tool result (test logs, diffs, file contents) are appended; the agent waits
  ``tool_wait`` between turns;
* when the context passes ``compact_at_tokens`` the agent sends a **compaction** request,
  and restarts from the shared prefix plus the summary: the old prefix dies;
* a **context cycle** runs from an agent's start, a compaction or a loop restart to the
  next; a share ``long_context_share`` of cycles runs on a **long-context (1M) model**: it
  compacts at ``long_context_compact_at_tokens`` instead, and its tool results are
  ``long_context_tool_result_scale`` times larger. Long cycles are spread evenly over an
  agent's cycles (systematic sampling with a random phase: exactly one in every
  ``1 / long_context_share`` in the long run), so every session gets its share of the long
  tail rather than some sessions all of it and others none;
* after a loop iteration (``loop_turns_mean`` turns on average) the loop **restarts**:
  same prompt, a new progress file, so the long prefix is reused;
* at a turn, with ``subagent_prob``, the agent **spawns sub-agents** that fork from its
  current context (prefix shared) and run a few turns while the parent waits;
* ``num_agents`` agents run concurrently with starts ``stagger_ms`` apart.

Block identity: every appended piece of text is a segment with its own random seed
(shared pieces share seeds); a block's id chains its parent's id with the pieces it
covers, so equal ids mean equal prefixes. The trace's ids are then densified (0..U-1
in order of first use). Times follow a nominal serving speed (``prefill_tokens_per_s``,
``decode_tokens_per_s``) to produce open-loop timestamps; the dependencies (sequence,
spawn, join, with ``tool_wait`` as delay) let a closed-loop simulator re-time them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.hashing import DEFAULT_ROOT
from kvtier.traces.model import NO_PARENT, Dep, Trace, TraceBuilder
from kvtier.validation import check_int, check_number

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser on Python ints (deterministic in every process)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


# Knobs that must be > 0 (the others >= 0), and knobs that are shares in [0, 1].
_POSITIVE_KNOBS = frozenset({
    "num_agents", "block_tokens", "system_prompt_tokens", "num_repos", "output_tokens_median",
    "tool_result_tokens_median", "requests_per_agent", "compact_at_tokens", "loop_turns_mean", "subagents_max",
    "subagent_turns_mean", "prefill_tokens_per_s", "decode_tokens_per_s", "long_context_tool_result_scale",
})
_SHARE_KNOBS = ("long_context_share", "subagent_prob")


@dataclass(frozen=True, kw_only=True)
class CodingAgentConfig:
    """Knobs of the coding-agent generator. Sources: [KT] kv-cache-tester's released Claude
    Code traces and docs (642 conversations, 112,176 requests; block_size 64; system ~2-3k
    and tools ~8-12k tokens; median per-conversation cache hit 96.9%; ~440 output tokens
    per request; input tokens per request ~110k median, ~140k mean, ~785k at most); [CC]
    Claude Code's 200k-token window and auto-compaction; [E] a kvtier estimate, stated as
    such, tuned so the default lands in the public ranges."""

    num_agents: int = 1
    block_tokens: int = 64  # [KT] block_size 64
    system_prompt_tokens: int = 2_900  # [KT] system_tokens 2,926 in the sample trace
    tool_definition_tokens: int = 11_900  # [KT] tool_tokens 11,899 in the sample trace
    num_repos: int = 1  # [E] agents are assigned repositories round-robin
    repo_context_tokens: int = 8_000  # [E] CLAUDE.md + files read at start, per repository
    task_prompt_tokens: int = 1_500  # [E] the loop's PROMPT.md
    progress_file_tokens: int = 2_500  # [E] progress notes carried across loop restarts
    output_tokens_median: float = 280.0  # [KT] mean ~440: lognormal median 280, sigma 0.9 -> mean 420
    output_tokens_sigma: float = 0.9
    tool_result_tokens_median: float = 1_700.0  # [E] tuned to [KT]'s ~96% per-session reuse
    tool_result_tokens_sigma: float = 1.1
    tool_wait_ms_median: float = 4_000.0  # [E] with the nominal service time, ~20 s per turn,
    tool_wait_ms_sigma: float = 1.0  # as [KT]'s median conversation (60 min, ~175 requests)
    requests_per_agent: int = 175  # [KT] 112,176 requests / 642 conversations
    compact_at_tokens: int = 190_000  # [CC] auto-compaction shortly before the 200k window
    # A share of context cycles runs on a 1M-context model: [KT]'s contexts reach ~785k tokens,
    # beyond any 200k window, and its request sizes are right-skewed (mean ~140k over median ~110k,
    # which a session bounded at 190k cannot give: its sizes are ~uniform, mean ~= median).
    long_context_share: float = 0.2  # [E] share of cycles; tuned to [KT]'s ~140k mean at ~110k median
    long_context_compact_at_tokens: int = 600_000  # [E] where such a cycle ends, below [KT]'s ~785k maximum
    long_context_tool_result_scale: float = 6.0  # [E] whole files and logs read into the large window:
    # the cycle passes its large contexts in few turns (a thin tail) at about the same per-turn reuse
    compaction_summary_tokens: int = 12_000  # [E] summary + files re-read after a compaction
    compaction_output_tokens: int = 3_000  # [E] tokens the compaction request generates
    loop_turns_mean: float = 300.0  # [E] turns per loop iteration (geometric): ~1 restart per 2 sessions
    subagent_prob: float = 0.03  # [E] chance per turn of spawning sub-agents
    subagents_max: int = 3  # [E] 1..max sub-agents spawned at once, uniform
    subagent_turns_mean: float = 6.0  # [E] requests per sub-agent (geometric, >= 1)
    subagent_task_tokens: int = 800  # [E] the sub-agent's task prompt appended to the fork
    subagent_result_tokens: int = 1_000  # [E] each sub-agent's report appended to the parent
    stagger_ms: float = 30_000.0  # [E] agent start spacing
    prefill_tokens_per_s: float = 10_000.0  # [E] nominal speed for timestamps only
    decode_tokens_per_s: float = 60.0  # [E] nominal speed for timestamps only
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # an int or a float knob, each stored as a plain Python value
            v = getattr(self, f.name)
            if f.type in ("int", int):
                v = check_int(v, f.name, minimum=1 if f.name in _POSITIVE_KNOBS else 0)
            elif f.name in _SHARE_KNOBS:
                v = check_number(v, f.name, minimum=0, maximum=1)
            else:
                v = check_number(v, f.name, minimum=0, min_exclusive=f.name in _POSITIVE_KNOBS)
            object.__setattr__(self, f.name, v)
        base = self.base_prefix_tokens + self.compaction_summary_tokens
        if self.compact_at_tokens <= base:
            raise ConfigError(f"compact_at_tokens: got {self.compact_at_tokens}, expected more than the prefix a "
                              f"compacted context restarts from ({base} tokens)")
        if self.long_context_share > 0 and self.long_context_compact_at_tokens < self.compact_at_tokens:
            raise ConfigError(f"long_context_compact_at_tokens: got {self.long_context_compact_at_tokens}, expected "
                              f">= compact_at_tokens ({self.compact_at_tokens}) while long_context_share > 0")

    @property
    def base_prefix_tokens(self) -> int:
        """Tokens every loop iteration starts from (system, tools, repository, prompt, progress)."""
        return (self.system_prompt_tokens + self.tool_definition_tokens + self.repo_context_tokens
                + self.task_prompt_tokens + self.progress_file_tokens)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CodingAgentConfig:
        """Build from a dict (a config file); unknown keys raise ``ConfigError`` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"config: got {type(data).__name__}, expected a JSON object of knobs")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config: unknown knobs {unknown}, expected some of {sorted(known)}")
        return cls(**data)


#: Named workloads for ``kvtier trace gen --workload``: overrides of the defaults.
WORKLOADS: dict[str, dict] = {
    # The calibrated default: a Claude-Code-like session (see CodingAgentConfig's sources).
    "coding-agent": {},
    # The same loop with a 64k-token window and 60 requests, no long-context cycles: small enough
    # to commit and test.
    "coding-agent-small": {"requests_per_agent": 60, "compact_at_tokens": 64_000, "compaction_summary_tokens": 4_000,
                           "loop_turns_mean": 40.0, "tool_result_tokens_median": 900.0, "long_context_share": 0.0},
    # Short tool-calling sessions calibrated (with 100 agents) to Mooncake's Tool&Agent trace:
    # 8,596 input and 182 output tokens per request on average, 59% cache ratio, 512-token blocks.
    "tool-agent": {"block_tokens": 512, "system_prompt_tokens": 1_000, "tool_definition_tokens": 1_500,
                   "repo_context_tokens": 1_000, "task_prompt_tokens": 500, "progress_file_tokens": 300,
                   "output_tokens_median": 100.0, "output_tokens_sigma": 1.0, "tool_result_tokens_median": 2_500.0,
                   "requests_per_agent": 3, "compact_at_tokens": 32_000, "loop_turns_mean": 12.0,
                   "subagent_prob": 0.0, "num_repos": 20, "long_context_share": 0.0},
}


def workload_config(name: str, **overrides) -> CodingAgentConfig:
    """The config of a named workload with ``overrides`` applied (``UnknownNameError``)."""
    if name not in WORKLOADS:
        raise UnknownNameError(f"workload: got {name!r}, expected one of {sorted(WORKLOADS)}")
    return CodingAgentConfig.from_dict({**WORKLOADS[name], **overrides})


class _Context:
    """One agent's context as chained block keys; appends segments token-exactly."""

    __slots__ = ("bt", "keys", "pieces", "pending", "last", "tokens")

    def __init__(self, block_tokens: int) -> None:
        self.bt = block_tokens
        self.keys: list[int] = []
        self.pieces = 0  # running content key of the partial block
        self.pending = 0  # tokens in the partial block
        self.last = DEFAULT_ROOT  # the same root key as kvtier.hashing
        self.tokens = 0

    def copy(self) -> _Context:
        c = _Context(self.bt)
        c.keys, c.pieces, c.pending = list(self.keys), self.pieces, self.pending
        c.last, c.tokens = self.last, self.tokens
        return c

    def append(self, seed: int, length: int) -> None:
        offset = 0
        while offset < length:
            take = min(length - offset, self.bt - self.pending)
            self.pieces = _mix(self.pieces ^ _mix(seed ^ _mix(offset * 0x10001 + take)))
            self.pending += take
            offset += take
            if self.pending == self.bt:
                self.last = _mix(self.last ^ self.pieces)
                self.keys.append(self.last)
                self.pieces, self.pending = 0, 0
        self.tokens += length


class _CycleWindows:
    """Which of an agent's context cycles run on the long-context model: systematic sampling.

    Cycle ``k`` is long iff ``floor(u + (k + 1) * share) > floor(u + k * share)`` for a phase
    ``u`` uniform in [0, 1) drawn from the agent's own stream: any ``n`` consecutive cycles hold
    ``floor(n * share)`` or ``ceil(n * share)`` long ones. ``next()`` returns the cycle's
    compaction threshold (tokens) and tool-result scale. With ``share`` 0 it draws nothing and
    every cycle is ``(compact_at_tokens, 1.0)``, so traces without long cycles are unchanged."""

    __slots__ = ("cfg", "phase", "k")

    def __init__(self, cfg: CodingAgentConfig, agent_index: int) -> None:
        self.cfg = cfg
        self.k = 0
        self.phase = 0.0
        if cfg.long_context_share > 0:
            self.phase = float(np.random.default_rng([cfg.seed, 3, agent_index]).random())

    def next(self) -> tuple[int, float]:
        c = self.cfg
        share, u, k = c.long_context_share, self.phase, self.k
        self.k += 1
        if share > 0 and math.floor(u + (k + 1) * share) > math.floor(u + k * share):
            return c.long_context_compact_at_tokens, c.long_context_tool_result_scale
        return c.compact_at_tokens, 1.0


class _Gen:
    def __init__(self, cfg: CodingAgentConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.b = TraceBuilder()
        self.num_sessions = 0
        self.row_done_ms: dict[int, float] = {}

    # --- random draws (seeded streams consumed in a fixed order: deterministic)
    def seed(self) -> int:
        return int(self.rng.integers(0, 2**63))

    def lognormal(self, median: float, sigma: float) -> int:
        return max(1, int(round(median * math.exp(sigma * self.rng.standard_normal()))))

    def wait_ms(self) -> float:
        c = self.cfg
        if c.tool_wait_ms_median == 0:
            return 0.0
        return float(round(c.tool_wait_ms_median * math.exp(c.tool_wait_ms_sigma * self.rng.standard_normal())))

    def geometric(self, mean: float) -> int:
        return int(self.rng.geometric(1.0 / max(mean, 1.0)))

    # --- one request
    def request(self, ctx: _Context, *, session: int, parent: int, ready_ms: float, output: int, wait: float,
                deps, prev_tokens: int) -> tuple[int, float]:
        """Add a request on ``ctx``; returns (row, completion time ms)."""
        c = self.cfg
        row = self.b.add(timestamp_ms=ready_ms, session_id=session, parent_session_id=parent,
                         input_length=ctx.tokens, output_length=output, tool_wait_ms=wait,
                         block_hashes=np.asarray(ctx.keys, dtype=np.uint64), deps=deps)
        new_tokens = max(ctx.tokens - prev_tokens, 0)
        service_ms = 1000.0 * (new_tokens / c.prefill_tokens_per_s + output / c.decode_tokens_per_s)
        done = ready_ms + round(service_ms, 3)
        self.row_done_ms[row] = done
        return row, done

    def new_session(self) -> int:
        self.num_sessions += 1
        return self.num_sessions - 1

    def base_context(self, repo_seed: int, prompt_seed: int) -> _Context:
        c = self.cfg
        ctx = _Context(c.block_tokens)
        ctx.append(self.shared_seeds[0], c.system_prompt_tokens)
        ctx.append(self.shared_seeds[1], c.tool_definition_tokens)
        ctx.append(repo_seed, c.repo_context_tokens)
        ctx.append(prompt_seed, c.task_prompt_tokens)
        ctx.append(self.seed(), c.progress_file_tokens)
        return ctx

    def agent(self, index: int, start_ms: float) -> None:
        c = self.cfg
        cycles = _CycleWindows(c, index)
        # One random stream per agent: changing one agent's knobs or the number of agents
        # leaves the other agents' draws as they were (common random numbers).
        self.rng = np.random.default_rng([c.seed, 1, index])
        session = self.new_session()
        repo_seed = self.repo_seeds[index % c.num_repos]
        prompt_seed = self.seed()
        ctx = self.base_context(repo_seed, prompt_seed)
        turns_left = self.geometric(c.loop_turns_mean)
        window, tool_scale = cycles.next()
        prev_row, prev_tokens, ready, wait = None, 0, start_ms, 0.0
        joins: list[int] = []
        made = 0
        while made < c.requests_per_agent:
            compacting = ctx.tokens >= window
            output = c.compaction_output_tokens if compacting else self.lognormal(c.output_tokens_median,
                                                                                  c.output_tokens_sigma)
            deps = [] if prev_row is None else [Dep.sequence(prev_row, wait)]
            deps += [Dep.join(j, wait) for j in joins]
            if joins:
                ready = max([ready] + [self.row_done_ms[j] + wait for j in joins])
            row, done = self.request(ctx, session=session, parent=NO_PARENT, ready_ms=ready, output=output,
                                     wait=wait, deps=deps, prev_tokens=prev_tokens)
            made += 1
            joins = []
            prev_row = row
            if compacting:
                # the summary replaces the conversation: only the shared prefix survives
                ctx = self.base_context(repo_seed, prompt_seed)
                ctx.append(self.seed(), c.compaction_summary_tokens)
                prev_tokens = 0
                window, tool_scale = cycles.next()
            else:
                prev_tokens = ctx.tokens
                ctx.append(self.seed(), output)
                turns_left -= 1
                if turns_left <= 0:  # loop restart: same prompt, new progress file
                    ctx = self.base_context(repo_seed, prompt_seed)
                    turns_left = self.geometric(c.loop_turns_mean)
                    prev_tokens = 0
                    window, tool_scale = cycles.next()
                elif c.subagent_prob > 0 and self.rng.random() < c.subagent_prob and made < c.requests_per_agent:
                    joins = self.subagents(ctx, parent_session=session, spawn_row=row, spawn_ms=done,
                                           tool_scale=tool_scale)
                    for _ in joins:
                        ctx.append(self.seed(), c.subagent_result_tokens)
                else:
                    ctx.append(self.seed(), self.tool_result(tool_scale))
            wait = self.wait_ms()
            ready = done + wait

    def tool_result(self, scale: float) -> int:
        c = self.cfg
        return self.lognormal(c.tool_result_tokens_median * scale, c.tool_result_tokens_sigma)

    def subagents(self, parent_ctx: _Context, *, parent_session: int, spawn_row: int, spawn_ms: float,
                  tool_scale: float) -> list[int]:
        """Sub-agents forked from ``parent_ctx``; they run on the parent's model (``tool_scale``)."""
        c = self.cfg
        lasts = []
        for _ in range(int(self.rng.integers(1, c.subagents_max + 1))):
            session = self.new_session()
            ctx = parent_ctx.copy()
            ctx.append(self.seed(), c.subagent_task_tokens)
            deps = [Dep.spawn(spawn_row)]
            ready, prev_tokens, wait = spawn_ms, parent_ctx.tokens, 0.0
            for _ in range(self.geometric(c.subagent_turns_mean)):
                output = self.lognormal(c.output_tokens_median, c.output_tokens_sigma)
                row, done = self.request(ctx, session=session, parent=parent_session, ready_ms=ready, output=output,
                                         wait=wait, deps=deps, prev_tokens=prev_tokens)
                prev_tokens = ctx.tokens
                ctx.append(self.seed(), output)
                ctx.append(self.seed(), self.tool_result(tool_scale))
                wait = self.wait_ms()
                deps = [Dep.sequence(row, wait)]
                ready = done + wait
            lasts.append(row)
        return lasts

    def run(self, workload: str | None = None) -> Trace:
        c = self.cfg
        self.rng = np.random.default_rng([c.seed, 0])
        self.shared_seeds = (self.seed(), self.seed())
        self.repo_seeds = []
        for r in range(c.num_repos):
            self.rng = np.random.default_rng([c.seed, 2, r])
            self.repo_seeds.append(self.seed())
        for a in range(c.num_agents):
            self.agent(a, a * c.stagger_ms)
        meta = {"generator": "kvtier.traces.generator/coding-agent", "seed": c.seed,
                "config": json.loads(json.dumps(c.as_dict()))}
        if workload is not None:
            meta["workload"] = workload
        return self.b.build(block_tokens=c.block_tokens, meta=meta, sort=True).densified()


def generate_trace(config: CodingAgentConfig | None = None, *, workload: str | None = None, **overrides) -> Trace:
    """A coding-agent trace. Pass a ``config``, or a ``workload`` name (default
    ``"coding-agent"``) with knob ``overrides`` (``num_agents=8, seed=3``). The same config
    gives the same trace, bit for bit; ``meta`` records generator, config and seed."""
    if config is None:
        config = workload_config(workload or "coding-agent", **overrides)
    elif workload is not None or overrides:
        raise ConfigError("config: give either a CodingAgentConfig or a workload name with overrides, not both")
    if not isinstance(config, CodingAgentConfig):
        raise ConfigError(f"config: got {type(config).__name__}, expected a CodingAgentConfig")
    return _Gen(config).run(workload)
