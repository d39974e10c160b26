"""Compute records of agent steps, and the episode report that gathers them.

Data flow: each model call builds a :class:`StepRecord` (mode, blocks run and skipped, FLOPs executed
against FLOPs at full depth, tokens, seconds) -> it rides in the reply's ``response_metadata["compute"]``
and in the chat model's :class:`ComputeTracker` -> an :class:`EpisodeReport` renders the steps of one
agent run as a markdown table or JSON. :class:`ComputeReportHandler` gathers the same records from any
LangChain run through callbacks, across threads and async tasks.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

Mode = Literal["tool_call", "planning"]


@dataclass(frozen=True)
class StepRecord:
    """Compute of one agent step (one model call)."""

    mode: Mode
    """``tool_call`` when the reply contains at least one tool call (valid or invalid), else ``planning``."""
    model_name: str
    routing: str
    """Source of the block decisions: ``learnt`` (a trained adapter), ``untrained`` (fresh routers run every
    block), or ``override``."""
    blocks_run: list[int]
    blocks_skipped: list[int]
    flops_executed: int
    """FLOPs this step ran, routers and unmerged LoRA included."""
    flops_full: int
    """FLOPs of the same step (same tokens) with every block run and no routers."""
    tokens_in: int
    tokens_out: int
    prefill_seconds: float
    decode_seconds: float
    tool_calls: list[str] = field(default_factory=list)
    """Names of the tools called in this step."""

    @property
    def flops_saved_share(self) -> float:
        """Share of the full-depth step FLOPs not executed (LM head included); negative if routing cost more."""
        return 1.0 - self.flops_executed / self.flops_full if self.flops_full else 0.0

    @property
    def blocks_skipped_share(self) -> float:
        """Share of decoder blocks skipped; not the same number as :attr:`flops_saved_share`."""
        total = len(self.blocks_run) + len(self.blocks_skipped)
        return len(self.blocks_skipped) / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain JSON-ready data, the derived shares included."""
        data = asdict(self)
        data["flops_saved_share"] = self.flops_saved_share
        data["blocks_skipped_share"] = self.blocks_skipped_share
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        """Rebuild a record from :meth:`to_dict` output (derived keys are ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


def _saved(executed: int, full: int) -> float:
    return 1.0 - executed / full if full else 0.0


@dataclass
class EpisodeReport:
    """The steps of one agent run."""

    steps: list[StepRecord] = field(default_factory=list)

    @property
    def flops_executed(self) -> int:
        """FLOPs executed over all steps."""
        return sum(step.flops_executed for step in self.steps)

    @property
    def flops_full(self) -> int:
        """FLOPs of all steps at full depth."""
        return sum(step.flops_full for step in self.steps)

    def by_mode(self) -> dict[str, dict[str, float]]:
        """Return steps, FLOPs executed and full, and the FLOPs saving per mode."""
        summary: dict[str, dict[str, float]] = {}
        for mode in ("tool_call", "planning"):
            steps = [s for s in self.steps if s.mode == mode]
            executed, full = sum(s.flops_executed for s in steps), sum(s.flops_full for s in steps)
            summary[mode] = {"steps": len(steps), "flops_executed": executed, "flops_full": full,
                             "flops_saved_share": _saved(executed, full)}
        return summary

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data: ``steps``, per-mode summary and totals."""
        return {
            "steps": [step.to_dict() for step in self.steps],
            "by_mode": self.by_mode(),
            "flops_executed": self.flops_executed,
            "flops_full": self.flops_full,
            "flops_saved_share": _saved(self.flops_executed, self.flops_full),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(steps=[StepRecord.from_dict(step) for step in data["steps"]])

    def to_json(self, indent: int = 2) -> str:
        """Return :meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        """Render one table row per step and a total row."""
        header = ("| step | mode | tool calls | blocks skipped | GFLOPs run | GFLOPs full | FLOPs saved "
                  "| tokens in/out | prefill s | decode s |")
        lines = [header, "|" + "---|" * 10]
        for index, step in enumerate(self.steps, start=1):
            skipped = ",".join(map(str, step.blocks_skipped)) or "none"
            lines.append(
                f"| {index} | {step.mode} | {', '.join(step.tool_calls) or '-'} | {skipped} "
                f"| {step.flops_executed / 1e9:.2f} | {step.flops_full / 1e9:.2f} | {step.flops_saved_share:.2%} "
                f"| {step.tokens_in}/{step.tokens_out} | {step.prefill_seconds:.2f} | {step.decode_seconds:.2f} |"
            )
        lines.append(
            f"| total | | | | {self.flops_executed / 1e9:.2f} | {self.flops_full / 1e9:.2f} "
            f"| {_saved(self.flops_executed, self.flops_full):.2%} | | | |"
        )
        return "\n".join(lines)


class ComputeTracker:
    """A thread-safe list of step records; :meth:`report` snapshots it as an :class:`EpisodeReport`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[StepRecord] = []

    def add(self, record: StepRecord) -> None:
        """Append one step record."""
        with self._lock:
            self._steps.append(record)

    def report(self) -> EpisodeReport:
        """Return the steps recorded so far."""
        with self._lock:
            return EpisodeReport(steps=list(self._steps))

    def reset(self) -> None:
        """Forget every recorded step (start a new episode)."""
        with self._lock:
            self._steps.clear()


class ComputeReportHandler(BaseCallbackHandler):
    """Callback handler that gathers the compute record of every ``LayerRouteChat`` call in a run.

    Pass it in ``config={"callbacks": [handler]}``; it is safe across threads and async tasks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tracker = ComputeTracker()

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        """Record the compute of each generation that carries one."""
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                compute = getattr(message, "response_metadata", {}).get("compute") if message else None
                if compute:
                    self.tracker.add(StepRecord.from_dict(compute))

    def report(self) -> EpisodeReport:
        """Return the steps gathered so far."""
        return self.tracker.report()


__all__ = ["ComputeReportHandler", "ComputeTracker", "EpisodeReport", "Mode", "StepRecord"]
