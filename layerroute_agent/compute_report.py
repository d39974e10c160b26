"""Compute records of agent steps, and the episode report that gathers them.

Data flow: each model call builds a :class:`StepRecord` (mode, blocks run and skipped, FLOPs executed
against FLOPs at full depth, tokens, seconds) -> it rides in the reply's ``response_metadata["compute"]``
and in the chat model's :class:`ComputeTracker` -> an :class:`EpisodeReport` renders the steps of one
agent run as a terminal or markdown table, JSON, CSV, or a PNG chart (the ``plot`` extra).
:class:`ComputeReportHandler` gathers the same records from any LangChain run through callbacks, across
threads and async tasks.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    block), or why the step ran every block without routers: ``override`` (``routing=False``), or
    ``after_tool_result``, ``forced_reply`` or ``no_tools``, which run the base model without LoRA."""
    blocks_run: list[int]
    blocks_skipped: list[int]
    flops_executed: int
    """FLOPs this step ran, routers and unmerged LoRA included."""
    flops_full: int
    """FLOPs of the same step (same tokens) with every block run, no routers and one token per decode pass."""
    tokens_in: int
    tokens_out: int
    prefill_seconds: float
    decode_seconds: float
    tool_calls: list[str] = field(default_factory=list)
    """Names of the tools called in this step."""
    decode_passes: int = 0
    """Decode forward passes after prefill: ``tokens_out`` or one fewer without drafting, fewer with accepted drafts."""
    tokens_drafted: int = 0
    """Tokens copied from the prompt or reply as drafts and checked by decode passes."""
    tokens_accepted: int = 0
    """Drafted tokens that equalled the model's own choice and are part of the reply."""

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


TABLE_HEADER = ("step", "mode", "tool calls", "blocks skipped", "GFLOPs run", "GFLOPs full", "FLOPs saved",
                "tokens in/out", "prefill s", "decode s")

# Columns of EpisodeReport.to_csv, in order. List fields (block indices, tool names) are written as
# space-separated values.
# NOTE: a tool name that contains whitespace comes back from from_csv split into several names.
CSV_COLUMNS = ("step", "mode", "tool_calls", "blocks_run", "blocks_skipped", "flops_executed", "flops_full",
               "flops_saved_share", "blocks_skipped_share", "tokens_in", "tokens_out", "prefill_seconds",
               "decode_seconds", "model_name", "routing", "decode_passes", "tokens_drafted", "tokens_accepted")
_CSV_INTS = ("flops_executed", "flops_full", "tokens_in", "tokens_out")
_CSV_DRAFT_INTS = ("decode_passes", "tokens_drafted", "tokens_accepted")
"""Columns added with drafted decoding; a CSV written before them reads them as 0."""
_CSV_FLOATS = ("prefill_seconds", "decode_seconds")


def _table_row(index: int, step: StepRecord) -> tuple[str, ...]:
    return (
        str(index),
        step.mode,
        ", ".join(step.tool_calls) or "-",
        ",".join(map(str, step.blocks_skipped)) or "none",
        f"{step.flops_executed / 1e9:.2f}",
        f"{step.flops_full / 1e9:.2f}",
        f"{step.flops_saved_share:.2%}",
        f"{step.tokens_in}/{step.tokens_out}",
        f"{step.prefill_seconds:.2f}",
        f"{step.decode_seconds:.2f}",
    )


def _aligned(column: int, cell: str, width: int) -> str:
    """Pad a cell of :data:`TABLE_HEADER`'s columns: text to the left, numbers (from GFLOPs run on) to the right."""
    return cell.rjust(width) if column >= TABLE_HEADER.index("GFLOPs run") else cell.ljust(width)


def _text_line(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = (_aligned(column, cell, width) for column, (cell, width) in enumerate(zip(cells, widths, strict=True)))
    return "  ".join(padded).rstrip()


def _markdown_line(cells: tuple[str, ...]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def _csv_row(index: int, step: StepRecord) -> dict[str, Any]:
    row = step.to_dict()
    row["step"] = index
    for name in ("tool_calls", "blocks_run", "blocks_skipped"):
        row[name] = " ".join(map(str, row[name]))
    return {column: row[column] for column in CSV_COLUMNS}


def _record_from_csv_row(line: int, row: dict[str, str]) -> StepRecord:
    """Rebuild one step from a CSV row; ``line`` (1-based, header included) names the row in errors."""
    missing = [column for column in CSV_COLUMNS if row.get(column) is None and column not in _CSV_DRAFT_INTS]
    if missing:
        raise ValueError(f"CSV line {line} is missing the columns {missing}. Write the file with EpisodeReport.to_csv")
    try:
        return StepRecord(
            mode=row["mode"],  # type: ignore[arg-type]
            model_name=row["model_name"],
            routing=row["routing"],
            blocks_run=[int(value) for value in row["blocks_run"].split()],
            blocks_skipped=[int(value) for value in row["blocks_skipped"].split()],
            tool_calls=row["tool_calls"].split(),
            **{name: int(row[name]) for name in _CSV_INTS},
            **{name: int(row.get(name) or 0) for name in _CSV_DRAFT_INTS},
            **{name: float(row[name]) for name in _CSV_FLOATS},
        )
    except ValueError as err:
        raise ValueError(f"CSV line {line} has an invalid number ({err}). Write the file with "
                         "EpisodeReport.to_csv") from err


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
        """Render one table row per step and a total row, as a markdown table."""
        lines = [_markdown_line(TABLE_HEADER), "|" + "---|" * len(TABLE_HEADER)]
        lines += [_markdown_line(_table_row(index, step)) for index, step in enumerate(self.steps, start=1)]
        lines.append(_markdown_line(self._total_row()))
        return "\n".join(lines)

    def to_text(self) -> str:
        """Render the rows of :meth:`to_markdown` as a plain table with aligned columns, for a terminal."""
        rows = [TABLE_HEADER, *(_table_row(index, step) for index, step in enumerate(self.steps, start=1)),
                self._total_row()]
        widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_HEADER))]
        lines = [_text_line(row, widths) for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def _total_row(self) -> tuple[str, ...]:
        return ("total", "", "", "", f"{self.flops_executed / 1e9:.2f}", f"{self.flops_full / 1e9:.2f}",
                f"{_saved(self.flops_executed, self.flops_full):.2%}", "", "", "")

    def to_csv(self, path: str | Path | None = None) -> str:
        """Return one CSV row per step, in the columns of :data:`CSV_COLUMNS`, and write it to ``path`` if given.

        List fields (``tool_calls``, ``blocks_run``, ``blocks_skipped``) are space-separated values, and the
        derived shares are included. :meth:`from_csv` reads the text back.
        """
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(_csv_row(index, step) for index, step in enumerate(self.steps, start=1))
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_csv(cls, text: str) -> EpisodeReport:
        """Rebuild a report from :meth:`to_csv` text (derived columns are ignored).

        Raises:
            ValueError: if a column is missing or a number cannot be parsed.
        """
        reader = csv.DictReader(io.StringIO(text))
        return cls(steps=[_record_from_csv_row(line, row) for line, row in enumerate(reader, start=2)])

    def plot(self, path: str | Path) -> Path:
        """Write a PNG bar chart of the FLOPs per step to ``path`` and return the path.

        Each step gets a bar of the FLOPs it ran, coloured by mode, with the full-depth FLOPs of the same step
        beside it. Needs matplotlib: ``pip install 'layerroute-agent[plot]'``.

        Raises:
            ImportError: if matplotlib is not installed.
            ValueError: if the report has no steps or ``path`` does not end in ``.png``.
        """
        from layerroute_agent.report_chart import plot_episode

        return plot_episode(self, path)


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

    Pass it in ``config={"callbacks": [handler]}`` of an agent, graph or model call; LangChain hands it on to
    every nested model call. Records are appended as the calls end, so steps of concurrent calls appear in
    the order they finished. One handler may serve calls from several threads and async tasks at once:
    LangChain runs a sync handler of an async call in a worker thread, and :class:`ComputeTracker` guards
    its list with a lock. Calls of other chat models carry no compute record and are not counted.
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

    def reset(self) -> None:
        """Forget the gathered steps (start a new episode)."""
        self.tracker.reset()


__all__ = ["CSV_COLUMNS", "ComputeReportHandler", "ComputeTracker", "EpisodeReport", "Mode", "StepRecord"]
