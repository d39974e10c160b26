"""Episode reports: terminal table, CSV round trip, PNG chart, and the handler under threads and asyncio."""

from __future__ import annotations

import asyncio
import csv
import io
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation, LLMResult

from layerroute_agent import ComputeReportHandler, EpisodeReport, LayerRouteChat, StepRecord
from layerroute_agent.compute_report import CSV_COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _record(tokens_in: int, mode: str = "tool_call", skipped: list[int] | None = None,
            tools: list[str] | None = None) -> StepRecord:
    skipped = [] if skipped is None else skipped
    return StepRecord(
        mode=mode,  # type: ignore[arg-type]
        model_name="tiny",
        routing="learnt",
        blocks_run=[block for block in range(4) if block not in skipped],
        blocks_skipped=skipped,
        flops_executed=1_000_000 * (4 - len(skipped)) + tokens_in,
        flops_full=4_000_000 + tokens_in,
        tokens_in=tokens_in,
        tokens_out=7,
        prefill_seconds=0.125,
        decode_seconds=0.5 / 3,
        tool_calls=["get_weather"] if tools is None else tools,
    )


@pytest.fixture
def report() -> EpisodeReport:
    return EpisodeReport(steps=[
        _record(100, skipped=[1, 2], tools=["get_weather", "convert_currency"]),
        _record(120, skipped=[2]),
        _record(150, mode="planning", tools=[]),
    ])


def test_csv_header_and_rows(report: EpisodeReport) -> None:
    lines = report.to_csv().splitlines()

    assert lines[0].split(",") == list(CSV_COLUMNS)
    assert len(lines) == 1 + len(report.steps)
    first = dict(zip(CSV_COLUMNS, lines[1].split(","), strict=True))
    assert first["step"] == "1"
    assert first["tool_calls"] == "get_weather convert_currency"
    assert first["blocks_run"] == "0 3"
    assert first["blocks_skipped"] == "1 2"
    assert float(first["flops_saved_share"]) == pytest.approx(report.steps[0].flops_saved_share)
    assert float(first["blocks_skipped_share"]) == 0.5
    last = dict(zip(CSV_COLUMNS, lines[3].split(","), strict=True))
    assert last["tool_calls"] == ""
    assert last["blocks_skipped"] == ""


def test_csv_round_trip(report: EpisodeReport, tmp_path: Path) -> None:
    path = tmp_path / "episode.csv"
    text = report.to_csv(path)

    assert path.read_text(encoding="utf-8") == text
    assert EpisodeReport.from_csv(text) == report


def test_csv_empty_report_has_header_only() -> None:
    text = EpisodeReport().to_csv()

    assert text == ",".join(CSV_COLUMNS) + "\n"
    assert EpisodeReport.from_csv(text) == EpisodeReport()


def _without_column(text: str, name: str) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = [column for column in CSV_COLUMNS if column != name]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def test_from_csv_missing_column_names_it(report: EpisodeReport) -> None:
    without_routing = _without_column(report.to_csv(), "routing")

    with pytest.raises(ValueError, match=r"CSV line 2 is missing the columns \['routing'\]"):
        EpisodeReport.from_csv(without_routing)


def test_from_csv_reads_files_written_before_drafting(report: EpisodeReport) -> None:
    text = report.to_csv()
    for name in ("decode_passes", "tokens_drafted", "tokens_accepted"):
        text = _without_column(text, name)
    steps = EpisodeReport.from_csv(text).steps
    assert [(s.decode_passes, s.tokens_drafted, s.tokens_accepted) for s in steps] == [(0, 0, 0)] * len(steps)
    assert [s.flops_executed for s in steps] == [s.flops_executed for s in report.steps]


def test_from_csv_bad_number_names_line(report: EpisodeReport) -> None:
    text = report.to_csv().replace(",120,", ",many,")

    with pytest.raises(ValueError, match="CSV line 3 has an invalid number"):
        EpisodeReport.from_csv(text)


def test_text_table_aligns_columns(report: EpisodeReport) -> None:
    lines = report.to_text().splitlines()

    assert len(lines) == 2 + len(report.steps) + 1
    assert lines[0].split()[:3] == ["step", "mode", "tool"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[-1].startswith("total")
    # Numbers are right-aligned, so every row's "FLOPs saved" cell ends at the same column.
    saved_end = lines[0].index("FLOPs saved") + len("FLOPs saved")
    for line, step in zip(lines[2:-1], report.steps, strict=True):
        assert line[:saved_end].endswith(f"{step.flops_saved_share:.2%}"), line


def test_markdown_and_text_share_cells(report: EpisodeReport) -> None:
    markdown_lines = report.to_markdown().splitlines()
    markdown_rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown_lines]
    text = report.to_text()

    assert len(markdown_rows) == 2 + len(report.steps) + 1
    for cell in markdown_rows[2]:
        assert cell in text


def _png_size(data: bytes) -> tuple[int, int]:
    # The IHDR chunk follows the signature: length (4 bytes), type (4), then width and height (4 each).
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_png(report: EpisodeReport, tmp_path: Path) -> None:
    path = report.plot(tmp_path / "episode.png")

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data.rstrip().endswith(b"IEND\xaeB`\x82")
    width, height = _png_size(data)
    assert width >= 600
    assert height >= 400
    # Empty axes of this size save to about 11 KB with matplotlib 3.11, and this chart is about 40 KB.
    assert len(data) > 20_000


def test_plot_rejects_non_png_path(report: EpisodeReport, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.png, got '.*episode\.svg'"):
        report.plot(tmp_path / "episode.svg")


def test_plot_rejects_empty_report(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no steps to plot"):
        EpisodeReport().plot(tmp_path / "empty.png")


def test_plot_without_matplotlib_names_extra(report: EpisodeReport, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import raise ImportError, as when the package is absent.
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)

    with pytest.raises(ImportError, match=r"pip install 'layerroute-agent\[plot\]'"):
        report.plot(tmp_path / "episode.png")
    assert not (tmp_path / "episode.png").exists()


class _RecordingChatModel(BaseChatModel):
    """A chat model whose reply carries a compute record with ``tokens_in`` set to the prompt's integer."""

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        record = _record(int(messages[-1].text))
        message = AIMessage(content="ok", response_metadata={"compute": record.to_dict()})
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_handler_ignores_replies_without_compute() -> None:
    handler = ComputeReportHandler()
    plain = LLMResult(generations=[[Generation(text="a")], [ChatGeneration(message=AIMessage(content="b"))]])

    handler.on_llm_end(plain)

    assert handler.report().steps == []


def test_handler_collects_thread_pool_calls() -> None:
    model = _RecordingChatModel()
    handler = ComputeReportHandler()
    prompts = [str(number) for number in range(200)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda prompt: model.invoke(prompt, config={"callbacks": [handler]}), prompts))

    tokens = sorted(step.tokens_in for step in handler.report().steps)
    assert tokens == list(range(200))


def test_handler_collects_direct_threaded_ends() -> None:
    handler = ComputeReportHandler()

    def end(number: int) -> None:
        message = AIMessage(content="", response_metadata={"compute": _record(number).to_dict()})
        handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(end, range(1000)))

    assert sorted(step.tokens_in for step in handler.report().steps) == list(range(1000))


async def test_handler_collects_asyncio_gather() -> None:
    model = _RecordingChatModel()
    handler = ComputeReportHandler()

    await asyncio.gather(*(model.ainvoke(str(number), config={"callbacks": [handler]}) for number in range(100)))

    assert sorted(step.tokens_in for step in handler.report().steps) == list(range(100))


async def test_handler_collects_tiny_model_async_and_threads(tiny_model_dir: Path) -> None:
    llm = LayerRouteChat(model=str(tiny_model_dir), adapter=None, max_tokens=4)
    handler = ComputeReportHandler()
    config = {"callbacks": [handler]}

    replies = await asyncio.gather(*(llm.ainvoke(f"question {n}", config=config) for n in range(4)),
                                   _collect_stream(llm, "streamed question", config))
    with ThreadPoolExecutor(max_workers=3) as pool:
        replies += list(pool.map(lambda n: llm.invoke(f"thread {n}", config=config), range(3)))

    steps = handler.report().steps
    assert len(steps) == 8
    expected = sorted(reply.response_metadata["compute"]["tokens_in"] for reply in replies)
    assert sorted(step.tokens_in for step in steps) == expected
    assert all(step.model_name == llm.model_name for step in steps)


async def _collect_stream(llm: LayerRouteChat, prompt: str, config: dict[str, Any]) -> AIMessage:
    merged = None
    async for chunk in llm.astream(prompt, config=config):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None
    return merged


def test_handler_reset_starts_new_episode() -> None:
    model = _RecordingChatModel()
    handler = ComputeReportHandler()
    model.invoke("1", config={"callbacks": [handler]})

    handler.reset()
    model.invoke("2", config={"callbacks": [handler]})

    assert [step.tokens_in for step in handler.report().steps] == [2]
