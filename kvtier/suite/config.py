"""The bench suite's configuration: what to sweep, from the embedded default or a TOML file.

A suite is models x targets x agent counts (one coding-agent trace per count) x eviction
policies x planners, served as each target's deployment says (replicas of ``tp x pp``
chips) at one precision for every target (``weights_precision``, ``kv_precision``: a
matched comparison; FP8 by default because Groq's 576 LPUs cannot hold a 70B model's
BF16 weights), plus: the headline configuration rerun with every estimated figure at its
pessimistic and optimistic end; a capacity scan (the agent counts of
``capacity_agents`` up to ``capacity_max_agents``, each simulated: no bisection, so a
non-monotone verdict shows) for the most agents each target serves under the SLO (p99
TTFT <= ``slo_ttft_s`` and p50 TPOT <= ``slo_tpot_s``, every request served); and a
sensitivity table (``SENSITIVITY``: the headline rerun with one assumption changed at a
time) saying which assumptions flip the verdict. TOML layout (every key optional; the
defaults are ``DEFAULT_SUITE``)::

    name = "my-sweep"
    models = ["llama-3.1-70b"]
    targets = ["h200", "cerebras-cs3x4"]
    policies = ["lru", "s3fifo"]
    planners = ["cost-optimal"]
    agents = [1, 8]
    weights_precision = "fp8"   # bf16 or fp8, every target
    kv_precision = "fp8"
    slo_ttft_s = 2.0         # p99
    slo_tpot_s = 0.05        # p50 (20 tokens/s per agent)
    min_chips = 8            # per-chip HBM presets (h100, b200, ...) get at least this many
    estimates = true         # rerun the headline at both ends of the estimate ranges
    sensitivity = true       # rerun the headline with each assumption of SENSITIVITY changed
    headline_policy = "lru"
    headline_planner = "cost-optimal"
    headline_agents = 8
    long_context_tokens = 131072
    capacity_max_agents = 64 # scan capacity_agents up to this (0: off)
    capacity_agents = [1, 2, 4, 8, 12, 16, 24, 32, 48, 64]
    max_num_batched_tokens = 8192   # the engine's scheduler (kvtier.sim.SimConfig)
    max_num_seqs = 256
    preemption = "recompute"        # or "swap"
    residency = "auto"              # or "stream"
    routing = "session"             # or "round-robin"
    prefill_replicas = 0            # > 0: disaggregated prefill/decode (at most replicas - 1 of a target)
    # decode_layer_latency_s = 3e-5 # overrides every family's per-layer overhead

    [workload]               # kvtier.traces.generate_trace knobs
    workload = "coding-agent"
    requests_per_agent = 60
    block_tokens = 256
    seed = 0

    [chips]                  # per-target chip counts (per-chip presets only)
    h100 = 16

    [deployments]            # per-target deployment (kvtier.targets.Deployment)
    h200 = {tp = 4, pp = 1}

A ``targets`` entry ending in ``.toml`` or ``.json`` is a user target file
(``kvtier.targets.load_target``; relative to the suite file), simulated as written.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kvtier.errors import ConfigError, UnknownNameError
from kvtier.model import ModelSpec
from kvtier.policies import POLICIES
from kvtier.sim.engine import PLANNER_CODES, PREEMPTION_MODES, RESIDENCY_MODES, ROUTING_MODES
from kvtier.targets import PRECISION_BYTES, Deployment, target_names
from kvtier.traces import WORKLOADS, CodingAgentConfig
from kvtier.validation import check_bool, check_choice, check_int, check_number, is_int

def is_target_file(entry: str) -> bool:
    """Whether a ``targets`` entry is a user target file (``kvtier.targets.load_target``)."""
    return isinstance(entry, str) and entry.lower().endswith((".toml", ".json"))


# Agents whose contexts grow to 100k-200k (every context cycle compacts at 190k): the question
# the suite answers. The generator's default also runs one cycle in five on a 1M-context model
# (to match kv-cache-tester's mean input); a workload dict may set ``long_context_share`` back.
_DEFAULT_WORKLOAD = {"workload": "coding-agent", "requests_per_agent": 60, "block_tokens": 256, "seed": 0,
                     "long_context_share": 0.0}


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """A sweep. See the module docstring for the fields; validated on construction."""

    name: str = "default"
    models: tuple[str, ...] = ("llama-3.1-70b", "qwen3-coder-480b-a35b")
    # cerebras-cs3x4 before cerebras-cs3: for a 70B model they are the same 4 wafers, and
    # the named unit is the one kept (see runner.duplicate_targets)
    targets: tuple[str, ...] = ("cerebras-cs3x4", *(t for t in target_names() if t != "cerebras-cs3x4"))
    policies: tuple[str, ...] = ("lru", "s3fifo", "arc", "cost-aware", "belady")
    planners: tuple[str, ...] = ("always-fetch", "always-recompute", "cost-optimal")
    agents: tuple[int, ...] = (1, 8, 64)
    weights_precision: str = "fp8"
    kv_precision: str = "fp8"
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.05
    min_chips: int = 8
    chips: dict = field(default_factory=dict)
    deployments: dict = field(default_factory=dict)
    estimates: bool = True
    sensitivity: bool = True
    headline_policy: str = "lru"
    headline_planner: str = "cost-optimal"
    headline_agents: int = 8
    long_context_tokens: int = 131_072
    decode_layer_latency_s: float | None = None
    capacity_max_agents: int = 64
    capacity_agents: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    preemption: str = "recompute"
    residency: str = "auto"
    routing: str = "session"
    prefill_replicas: int = 0
    workload: dict = field(default_factory=lambda: dict(_DEFAULT_WORKLOAD))
    base_dir: str = ""

    def __post_init__(self) -> None:
        for name in ("models", "targets", "policies", "planners", "agents", "capacity_agents"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
                v = tuple(v)
            if not isinstance(v, tuple) or not v:
                raise ConfigError(f"suite.{name}: got {v!r}, expected a non-empty list")
        for m in self.models:
            ModelSpec.preset(m)  # UnknownNameError names the choices
        known = target_names()
        for t in self.targets:
            if is_target_file(t):
                if not self.target_path(t).is_file():
                    raise ConfigError(f"suite.targets: target file {t!r} not found (relative paths are taken from "
                                      f"{self.base_dir or 'the working directory'})")
            elif t not in known:
                raise UnknownNameError(f"suite.targets: got {t!r}, expected some of {known} or a .toml/.json "
                                       "target file")
        for p in self.policies + (self.headline_policy,):
            check_choice(p, "suite.policies", POLICIES, error=UnknownNameError)
        for p in self.planners + (self.headline_planner,):
            check_choice(p, "suite.planners", PLANNER_CODES, error=UnknownNameError)
        if not isinstance(self.chips, dict) or not all(k in known and is_int(v) and v > 0 for k, v in self.chips.items()):
            raise ConfigError(f"suite.chips: got {self.chips!r}, expected a table of target name = chip count")
        if not isinstance(self.deployments, dict):
            raise ConfigError(f"suite.deployments: got {self.deployments!r}, expected a table of target = {{tp, pp}}")
        for k, v in self.deployments.items():
            if k not in self.targets or not isinstance(v, dict):
                raise ConfigError(f"suite.deployments.{k}: got {v!r}, expected a target of suite.targets with a table "
                                  "of tp, pp, replicas")
            try:
                Deployment(**v)
            except (TypeError, ConfigError) as e:
                raise ConfigError(f"suite.deployments.{k}: {e}") from None
        for name in ("weights_precision", "kv_precision"):
            check_choice(getattr(self, name), f"suite.{name}", PRECISION_BYTES)
        check_choice(self.preemption, "suite.preemption", PREEMPTION_MODES)
        check_choice(self.residency, "suite.residency", RESIDENCY_MODES)
        check_choice(self.routing, "suite.routing", ROUTING_MODES)
        checked = {
            "agents": tuple(check_int(a, "suite.agents") for a in self.agents),
            "headline_agents": check_int(self.headline_agents, "suite.headline_agents"),
            "slo_ttft_s": check_number(self.slo_ttft_s, "suite.slo_ttft_s", minimum=0, min_exclusive=True),
            "slo_tpot_s": check_number(self.slo_tpot_s, "suite.slo_tpot_s", minimum=0, min_exclusive=True),
            "sensitivity": check_bool(self.sensitivity, "suite.sensitivity"),
            "capacity_agents": tuple(sorted({check_int(a, "suite.capacity_agents") for a in self.capacity_agents})),
            "max_num_batched_tokens": check_int(self.max_num_batched_tokens, "suite.max_num_batched_tokens"),
            "max_num_seqs": check_int(self.max_num_seqs, "suite.max_num_seqs"),
            "prefill_replicas": check_int(self.prefill_replicas, "suite.prefill_replicas", minimum=0),
            "min_chips": check_int(self.min_chips, "suite.min_chips"),
            "chips": {k: int(v) for k, v in self.chips.items()},
            "estimates": check_bool(self.estimates, "suite.estimates"),
            "capacity_max_agents": check_int(self.capacity_max_agents, "suite.capacity_max_agents", minimum=0),
            "long_context_tokens": check_int(self.long_context_tokens, "suite.long_context_tokens"),
        }
        if self.decode_layer_latency_s is not None:
            checked["decode_layer_latency_s"] = check_number(self.decode_layer_latency_s, "suite.decode_layer_latency_s",
                                                             minimum=0, maximum=1, max_exclusive=True)
        for name, value in checked.items():  # plain Python values: the config is written out as JSON
            object.__setattr__(self, name, value)
        if not isinstance(self.workload, dict):
            raise ConfigError(f"suite.workload: got {self.workload!r}, expected a table of generator knobs")
        wl = {**_DEFAULT_WORKLOAD, **self.workload}
        object.__setattr__(self, "workload", wl)
        self.trace_config(1)  # validates the knobs

    def target_path(self, entry: str) -> Path:
        """The file of a ``targets`` entry that names one (relative to ``base_dir``)."""
        p = Path(entry)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p

    def capacity_counts(self) -> tuple[int, ...]:
        """The agent counts the capacity scan simulates: ``capacity_agents`` up to
        ``capacity_max_agents`` (which is always one of them)."""
        top = self.capacity_max_agents
        return tuple(sorted({a for a in self.capacity_agents if a <= top} | ({top} if top else set())))

    def sim_options(self, replicas: int = 1) -> dict:
        """The engine's knobs (``kvtier.sim.SimConfig`` fields) every simulation uses, on a
        target of ``replicas`` replicas (disaggregation needs two or more: it keeps one to
        decode)."""
        return {"decode_layer_latency_s": self.decode_layer_latency_s, "max_num_batched_tokens": self.max_num_batched_tokens,
                "max_num_seqs": self.max_num_seqs, "preemption": self.preemption, "residency": self.residency,
                "routing": self.routing, "prefill_replicas": min(self.prefill_replicas, max(0, replicas - 1))}

    def trace_config(self, agents: int, overrides: dict | None = None) -> CodingAgentConfig:
        """The generator config of the ``agents``-agent trace (``overrides``: a sensitivity
        variant's workload knobs)."""
        knobs = {**self.workload, **(overrides or {})}
        name = knobs.pop("workload")
        if name not in WORKLOADS:
            raise UnknownNameError(f"suite.workload.workload: got {name!r}, expected one of {sorted(WORKLOADS)}")
        try:
            return CodingAgentConfig.from_dict({**WORKLOADS[name], **knobs, "num_agents": agents})
        except ConfigError as e:
            raise ConfigError(f"suite.workload: {e}") from None

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


DEFAULT_SUITE = SuiteConfig()

#: ``kvtier bench --quick``: one model, one target of every family (SRAM wafer, LPU, HBM
#: GPU, Blackwell, Etched, MatX), one policy and planner, 1 and 8 agents, a short capacity
#: scan; no estimate or sensitivity reruns.
QUICK_SUITE = SuiteConfig(
    name="quick", models=("llama-3.1-70b",),
    targets=("cerebras-cs3x4", "groq-lpu-576", "h200", "gb200-nvl72", "etched-sohu", "matx-one"),
    policies=("lru",), planners=("cost-optimal",), agents=(1, 8), headline_agents=8, estimates=False,
    sensitivity=False, capacity_max_agents=16, capacity_agents=(1, 2, 4, 8, 12, 16), workload=dict(_DEFAULT_WORKLOAD),
)

_FIELDS = {f.name for f in dataclasses.fields(SuiteConfig)} - {"base_dir"}



def load_suite(path, *, base: SuiteConfig = DEFAULT_SUITE) -> SuiteConfig:
    """A ``SuiteConfig`` from a TOML file; keys it does not set keep ``base``'s values.
    Unknown keys and bad values raise ``ConfigError`` naming the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read suite config ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return suite_from_dict({**data, "base_dir": str(p.resolve().parent)}, base=base, where=str(p))


def suite_from_dict(data: dict, *, base: SuiteConfig = DEFAULT_SUITE, where: str = "suite") -> SuiteConfig:
    """A ``SuiteConfig`` from parsed TOML data; keys it does not set keep ``base``'s values."""
    unknown = sorted(set(data) - _FIELDS - {"base_dir"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}, expected some of {sorted(_FIELDS)}")
    kw = dict(data)
    if "workload" in kw and isinstance(kw["workload"], dict):
        kw["workload"] = {**base.workload, **kw["workload"]}
    try:
        return dataclasses.replace(base, **kw)
    except (ConfigError, UnknownNameError) as e:
        raise type(e)(f"{where}: {e}") from None
