"""The step-latency benchmark's loop, its per-engine summary and the ratios it reports.

Data flow: engines x steps x rounds -> :class:`~benchmarks.engines.Measurement` rows -> medians per
(engine, step) in :class:`StepSummary` -> totals per step kind -> the ``ratios`` object.

``python -m benchmarks.latency_summary RUN.json`` prints the ratios of a saved run as this version
computes them, so runs saved before a ratio was added or redefined can be compared.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmarks.agent_steps import AgentStep
from benchmarks.engines import Engine, Measurement, normalised_step_seconds
from layerroute_agent.flops import FlopsCounter

logger = logging.getLogger(__name__)

BASELINE, ALL_BLOCKS, ROUTED, CHAT_HF, LLAMA_CPP = (
    "transformers", "layerroute_all_blocks", "layerroute", "chat_huggingface", "llama_cpp")


def run_rounds(engines: Sequence[Engine], steps: Sequence[AgentStep], rounds: int, warmup: int,
               on_measurement: Callable[[Measurement], None] | None = None) -> list[Measurement]:
    """Run every engine on every step it serves, ``warmup + rounds`` times, and return the kept measurements.

    Engines alternate within each (round, step), and the starting engine rotates from one (round, step) to
    the next, so slow phases of a shared machine fall on every engine alike. Warm-up rounds are dropped.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"rounds must be >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    kept: list[Measurement] = []
    turn = 0
    for round_index in range(warmup + rounds):
        for step in steps:
            offset = turn % len(engines)
            turn += 1
            for engine in [*engines[offset:], *engines[:offset]]:
                if engine.unserved_reason(step) is not None:
                    continue
                measurement = engine.run(step, round_index)
                if on_measurement is not None:
                    on_measurement(measurement)
                if round_index >= warmup:
                    kept.append(measurement)
    return kept


@dataclass
class StepSummary:
    """Medians of one engine on one step over the kept rounds."""

    engine: str
    step: str
    kind: str
    rounds: int
    prompt_tokens: int
    generated_tokens: float
    """Median tokens the engine generated before the fixed-length extension."""
    prefill_seconds: float
    decode_tokens_per_second: float | None
    step_seconds: float | None
    """Median whole-step seconds at exactly ``new_tokens`` generated tokens."""
    peak_memory_mb: float | None
    flops: int
    """Analytic FLOPs of the step at ``new_tokens`` tokens with the blocks this engine ran, plus the median
    FLOPs of drafts that the reply did not use."""
    flops_full: int
    """The same step with every block run, no routers and one token per decode pass."""
    tokens_drafted: float = 0.0
    """Median drafted tokens checked per step."""
    tokens_accepted: float = 0.0
    """Median drafted tokens accepted into the reply per step."""

    @property
    def flops_saved_share(self) -> float:
        """Share of the full-depth FLOPs not executed (negative when routers cost more than they skip)."""
        return 1.0 - self.flops / self.flops_full


def _median_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(measurements: Sequence[Measurement], steps: Sequence[AgentStep], counter: FlopsCounter
              ) -> list[StepSummary]:
    """Reduce the measurements to one :class:`StepSummary` per (engine, step)."""
    by_name = {step.name: step for step in steps}
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.engine, m.step), []).append(m)
    summaries = []
    for (engine, step_name), rows in groups.items():
        step = by_name[step_name]
        normalised = [normalised_step_seconds(m, step.new_tokens) for m in rows]
        if any(value is None for value in normalised):
            logger.warning("%s on %s: a round ended before any decode pass, so it has no decode rate and is left "
                           "out of the median step time", engine, step_name)
        rates = [m.decode_calls / m.decode_seconds if m.decode_seconds > 0 else None for m in rows]
        memory = [m.peak_memory_bytes / 2**20 if m.peak_memory_bytes is not None else None for m in rows]
        prompt = int(statistics.median(m.prompt_tokens for m in rows))
        blocks = int(statistics.median(m.blocks_run for m in rows))
        routers = int(statistics.median(m.routers_evaluated for m in rows))
        decoded = step.new_tokens - 1
        extra = [m.extra_draft_flops for m in rows]
        summaries.append(StepSummary(
            engine=engine, step=step_name, kind=step.kind, rounds=len(rows), prompt_tokens=prompt,
            generated_tokens=statistics.median(m.generated_tokens for m in rows),
            prefill_seconds=statistics.median(m.prefill_seconds for m in rows),
            decode_tokens_per_second=_median_or_none(rates), step_seconds=_median_or_none(normalised),
            peak_memory_mb=_median_or_none(memory),
            flops=counter.step(prompt, decoded, blocks, routers) + int(statistics.median(extra)),
            flops_full=counter.step(prompt, decoded, counter.shape.num_blocks, 0),
            tokens_drafted=statistics.median(m.tokens_drafted for m in rows),
            tokens_accepted=statistics.median(m.tokens_accepted for m in rows),
        ))
    return summaries


def _totals(summaries: Sequence[StepSummary], engine: str, steps: set[str]) -> tuple[float, int, int] | None:
    """Return (seconds, FLOPs, full FLOPs) of ``engine`` summed over ``steps``; ``None`` if any is missing."""
    rows = {s.step: s for s in summaries if s.engine == engine and s.step in steps}
    if not steps or set(rows) != steps or any(r.step_seconds is None for r in rows.values()):
        return None
    return (sum(r.step_seconds for r in rows.values()), sum(r.flops for r in rows.values()),
            sum(r.flops_full for r in rows.values()))


def _ratio(numerator: tuple | None, denominator: tuple | None) -> float | None:
    if numerator is None or denominator is None or denominator[0] == 0:
        return None
    return numerator[0] / denominator[0]


def compute_ratios(summaries: Sequence[StepSummary]) -> dict[str, float | None]:
    """Return the benchmark's ratios; each is ``None`` when an engine or step it needs did not run.

    Every ratio compares the summed median whole-step seconds of two engines over the same steps:

    * ``routing_overhead``: all-blocks ``LayerRouteChat`` / transformers ``generate`` - 1, every step. With
      drafted decoding on, it also holds the drafting gain (negative); ``--draft-tokens 0`` isolates routing;
    * ``tool_call_speedup``, ``planning_speedup``: transformers ``generate`` / routed ``LayerRouteChat``,
      on the steps of that kind;
    * ``routing_only_tool_call_speedup``: all-blocks / routed ``LayerRouteChat`` on tool-call steps, the part
      of the speed-up that routing brings when both decode the same way;
    * ``time_to_flops_saving``: (1 - routed / all-blocks seconds) / (1 - routed / all-blocks FLOPs), tool-call
      steps. Both ``LayerRouteChat`` engines decode the same way, so routing is the only difference. ``None``
      when routing saved no FLOPs. ``time_to_flops_saving_routed_steps`` keeps only the tool-call steps where
      the routed engine ran fewer FLOPs, because on the others the two engines differ by noise alone;
    * ``vs_chat_huggingface``: ChatHuggingFace / routed, on the steps ChatHuggingFace serves; the
      ``_tool_call`` variant keeps only its tool-call steps;
    * ``vs_llama_cpp``: llama.cpp / routed, every step.
    """
    every = {s.step for s in summaries}
    tool = {s.step for s in summaries if s.kind == "tool_call"}
    planning = {s.step for s in summaries if s.kind == "planning"}
    served_by_chat_hf = {s.step for s in summaries if s.engine == CHAT_HF}
    ratios: dict[str, float | None] = {}
    overhead = _ratio(_totals(summaries, ALL_BLOCKS, every), _totals(summaries, BASELINE, every))
    ratios["routing_overhead"] = None if overhead is None else overhead - 1
    ratios["tool_call_speedup"] = _ratio(_totals(summaries, BASELINE, tool), _totals(summaries, ROUTED, tool))
    ratios["planning_speedup"] = _ratio(_totals(summaries, BASELINE, planning),
                                        _totals(summaries, ROUTED, planning))
    ratios["routing_only_tool_call_speedup"] = _ratio(_totals(summaries, ALL_BLOCKS, tool),
                                                      _totals(summaries, ROUTED, tool))
    ratios["time_to_flops_saving"] = _time_to_flops(_totals(summaries, ROUTED, tool),
                                                    _totals(summaries, ALL_BLOCKS, tool))
    routed_tool = _fewer_flops_when_routed(summaries, tool)
    ratios["time_to_flops_saving_routed_steps"] = _time_to_flops(_totals(summaries, ROUTED, routed_tool),
                                                                 _totals(summaries, ALL_BLOCKS, routed_tool))
    ratios["vs_chat_huggingface"] = _ratio(_totals(summaries, CHAT_HF, served_by_chat_hf),
                                           _totals(summaries, ROUTED, served_by_chat_hf))
    served_tool = served_by_chat_hf & tool
    ratios["vs_chat_huggingface_tool_call"] = _ratio(_totals(summaries, CHAT_HF, served_tool),
                                                     _totals(summaries, ROUTED, served_tool))
    ratios["vs_llama_cpp"] = _ratio(_totals(summaries, LLAMA_CPP, every), _totals(summaries, ROUTED, every))
    return ratios


def _fewer_flops_when_routed(summaries: Sequence[StepSummary], steps: set[str]) -> set[str]:
    """Return the steps among ``steps`` where the routed engine ran fewer FLOPs than the all-blocks one."""
    flops = {(s.engine, s.step): s.flops for s in summaries}
    return {step for step in steps
            if (ROUTED, step) in flops and (ALL_BLOCKS, step) in flops and flops[ROUTED, step] < flops[ALL_BLOCKS, step]}


def _time_to_flops(routed: tuple | None, all_blocks: tuple | None) -> float | None:
    if routed is None or all_blocks is None:
        return None
    seconds_saved = 1.0 - routed[0] / all_blocks[0]
    flops_saved = 1.0 - routed[1] / all_blocks[1]
    return seconds_saved / flops_saved if flops_saved > 0 else None


def summary_rows(summaries: Sequence[StepSummary]) -> list[dict]:
    """Return the summaries as JSON-ready dicts, with the FLOPs saving spelled out."""
    return [{**asdict(s), "flops_saved_share": s.flops_saved_share} for s in summaries]


def ratios_of_saved_run(path: Path) -> dict[str, float | None]:
    """Return :func:`compute_ratios` of the ``summaries`` in a JSON file written by ``step_latency --json``."""
    names = {field.name for field in fields(StepSummary)}
    rows = json.loads(path.read_text())["summaries"]
    return compute_ratios([StepSummary(**{key: value for key, value in row.items() if key in names}) for row in rows])


def main(argv: list[str] | None = None) -> int:
    """Print the ratios of each saved run named on the command line; return the exit status."""
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print("usage: python -m benchmarks.latency_summary RUN.json [RUN.json ...]", file=sys.stderr)
        return 2
    for path in paths:
        ratios = ratios_of_saved_run(path)
        print(f"{path}: " + json.dumps({key: None if value is None else round(value, 4) for key, value in ratios.items()}))
    return 0


__all__ = [
    "ALL_BLOCKS",
    "BASELINE",
    "CHAT_HF",
    "LLAMA_CPP",
    "ROUTED",
    "StepSummary",
    "compute_ratios",
    "ratios_of_saved_run",
    "run_rounds",
    "summarise",
    "summary_rows",
]


if __name__ == "__main__":
    sys.exit(main())
