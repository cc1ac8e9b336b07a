"""Agent traces: the columnar ``Trace``, readers and writers for kvtier's and public formats,
a synthetic coding-agent generator, and trace statistics.

    from kvtier.traces import read_trace, write_trace, generate_trace, trace_stats
    trace = read_trace("traces/coding-agent-1.kvtrace")          # format detected
    trace = read_trace("mooncake.jsonl", "mooncake")             # 512-token blocks
    write_trace(trace, "out.jsonl", "dynamo-v2")                  # agentic Mooncake v2
    trace = generate_trace(workload="coding-agent", num_agents=8, seed=1)
    print(trace_stats(trace).as_dict())

``traces/README.md`` (top level) specifies every format and the generator's knobs.
"""

from kvtier.traces.generator import WORKLOADS, CodingAgentConfig, generate_trace, workload_config
from kvtier.traces.io import READ_FORMATS, WRITE_FORMATS, detect_format, read_trace, write_trace
from kvtier.traces.model import (
    NO_PARENT,
    RELATION_JOIN,
    RELATION_NAMES,
    RELATION_SEQUENCE,
    RELATION_SPAWN,
    TRIGGER_COMPLETION,
    TRIGGER_DISPATCH,
    TRIGGER_NAMES,
    Dep,
    RequestView,
    Trace,
    TraceBuilder,
)
from kvtier.traces.stats import TraceStats, trace_stats

__all__ = [
    "Dep", "NO_PARENT", "READ_FORMATS", "RELATION_JOIN", "RELATION_NAMES", "RELATION_SEQUENCE", "RELATION_SPAWN",
    "RequestView", "TRIGGER_COMPLETION", "TRIGGER_DISPATCH", "TRIGGER_NAMES", "Trace", "TraceBuilder",
    "TraceStats", "WORKLOADS", "WRITE_FORMATS", "CodingAgentConfig", "detect_format", "generate_trace",
    "read_trace", "trace_stats", "workload_config", "write_trace",
]
