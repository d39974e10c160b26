"""Worked-solution datasets (CHAMP, GSM8K, Turing-Open-Reasoning) as planning examples.

Each problem becomes one :class:`TraceExample` with mode ``"planning"``: the user turn is the problem
and the target is its worked solution, ending in ``Final answer: ...``. CHAMP ships inside the
``champ-dataset`` distribution and is read from there; the others are read through
:func:`training.data.sources.read_rows` from a local file or the hub.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from .examples import SkipCounter, TraceExample, counter_or_new, planning_target, report_if_owned
from .sources import distribution_file, read_rows

logger = logging.getLogger(__name__)

CHAMP_DISTRIBUTION = "champ-dataset"
_CHAMP_FILE = "champ_dataset/dataset_files/v0.json"
GSM8K_HUB_ID = "openai/gsm8k"
TURING_HUB_ID = "TuringEnterprises/Turing-Open-Reasoning"

_GSM8K_ANSWER_MARK = "####"
_GSM8K_CALCULATOR = re.compile(r"<<[^<>]*>>")  # Calculator annotations such as "<<48/2=24>>".

# NOTE: these field names are unconfirmed for Turing-Open-Reasoning. The Open-RL card of the same
# organisation lists question and answer fields, so those names come first. The other names are guesses.
_TURING_QUESTION_FIELDS = ("question", "prompt", "problem")
_TURING_REASONING_FIELDS = ("reasoning", "solution", "rationale", "explanation", "chain_of_thought")
_TURING_ANSWER_FIELDS = ("answer", "final_answer")


def _user_example(problem: str, target: str, source: str, trace_id: str) -> TraceExample:
    return TraceExample(messages=[{"role": "user", "content": problem}], target=target, tools=None,
                        mode="planning", source=source, trace_id=trace_id)


def champ_data_file() -> Path:
    """Return the path of CHAMP's ``v0.json`` inside the ``champ-dataset`` distribution.

    Raises:
        ModuleNotFoundError: when ``champ-dataset`` is not installed.
        FileNotFoundError: when the installed version has no ``v0.json``.
    """
    return distribution_file(CHAMP_DISTRIBUTION, _CHAMP_FILE)


def load_champ(*, skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load the CHAMP competition math problems as planning examples.

    ``v0.json`` maps ``"problems"`` ids to problems with ``_text`` (the statement), ``solution.steps``
    (each with ``_text``) and ``_answer``. The ``_text`` fields are the plain-text versions; the
    ``_raw_text`` ones carry ``@@`` math markers. The target numbers the steps and ends in the answer.
    """
    counter = counter_or_new(skips)
    with champ_data_file().open(encoding="utf-8") as handle:
        problems = json.load(handle)["problems"]
    examples = []
    for identifier, problem in problems.items():
        example = _champ_example(identifier, problem, counter)
        if example is not None:
            examples.append(example)
    logger.info("loaded %d CHAMP examples", len(examples))
    report_if_owned(counter, skips, "skipped CHAMP problems")
    return examples


def _champ_example(identifier: str, problem: dict[str, Any], skips: SkipCounter) -> TraceExample | None:
    statement = (problem.get("_text") or "").strip()
    steps = [(step.get("_text") or "").strip() for step in (problem.get("solution") or {}).get("steps", [])]
    if not statement:
        skips.add("champ:empty problem text", identifier)
        return None
    if not steps or not all(steps):
        skips.add("champ:missing solution steps", identifier)
        return None
    answer = (problem.get("_answer") or "").strip()
    return _user_example(statement, planning_target(steps, answer), "champ", identifier)


def load_gsm8k(source: str | Path = GSM8K_HUB_ID, *, config: str | None = "main", split: str = "train",
               limit: int | None = None, skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load GSM8K grade-school math problems as planning examples.

    Rows contain ``question`` and ``answer``, where the answer is the worked solution (one step a line,
    with ``<<...>>`` calculator annotations) and a last ``#### <number>`` line. The target numbers
    the steps without the annotations and ends in ``Final answer: <number>``.

    Args:
        source: a local .jsonl/.json/.parquet file, or a hub id (default ``openai/gsm8k``).
        config: the hub configuration (``"main"``; ``"socratic"`` also exists); ignored for local files.
        split: the hub split; ignored for local files.
        limit: read at most this many rows.
        skips: counter for rejected rows; a fresh one is created (and its counts logged) when ``None``.
    """
    counter = counter_or_new(skips)
    examples = []
    for index, row in enumerate(read_rows(source, "gsm8k", counter, config=config, split=split, limit=limit)):
        example = _gsm8k_example(row, str(index), counter)
        if example is not None:
            examples.append(example)
    logger.info("loaded %d GSM8K examples from %s", len(examples), source)
    report_if_owned(counter, skips, "skipped GSM8K rows")
    return examples


def _gsm8k_example(row: dict[str, Any], trace_id: str, skips: SkipCounter) -> TraceExample | None:
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        skips.add("gsm8k:missing question", trace_id)
        return None
    if not isinstance(answer, str) or _GSM8K_ANSWER_MARK not in answer:
        skips.add("gsm8k:answer has no '####' line", trace_id)
        return None
    reasoning, _, final = answer.rpartition(_GSM8K_ANSWER_MARK)
    steps = [_GSM8K_CALCULATOR.sub("", line).strip() for line in reasoning.splitlines()]
    steps = [step for step in steps if step]
    if not steps or not final.strip():
        skips.add("gsm8k:empty solution or final answer", trace_id)
        return None
    return _user_example(question.strip(), planning_target(steps, final.strip()), "gsm8k", trace_id)


def load_turing(source: str | Path = TURING_HUB_ID, *, config: str | None = None, split: str = "train",
                limit: int | None = None, skips: SkipCounter | None = None) -> list[TraceExample]:
    """Load Turing-Open-Reasoning STEM problems as planning examples.

    The problem is read from the first present field of ``question``, ``prompt`` or ``problem``; the
    worked reasoning from ``reasoning``, ``solution``, ``rationale``, ``explanation`` or
    ``chain_of_thought``; the answer from ``answer`` or ``final_answer``. The target is the reasoning,
    then ``Final answer: <answer>``. A row with an answer and no reasoning gives the answer line alone.

    Args:
        source: a local .jsonl/.json/.parquet file, or a hub id (default ``TuringEnterprises/Turing-Open-Reasoning``).
        config: the hub configuration; ignored for local files.
        split: the hub split; ignored for local files.
        limit: read at most this many rows.
        skips: counter for rejected rows; a fresh one is created (and its counts logged) when ``None``.
    """
    counter = counter_or_new(skips)
    examples = []
    for index, row in enumerate(read_rows(source, "turing", counter, config=config, split=split, limit=limit)):
        example = _turing_example(row, str(row.get("conversation_id", index)), counter)
        if example is not None:
            examples.append(example)
    logger.info("loaded %d Turing-Open-Reasoning examples from %s", len(examples), source)
    report_if_owned(counter, skips, "skipped Turing-Open-Reasoning rows")
    return examples


def _first_text(row: dict[str, Any], fields: tuple[str, ...]) -> str:
    for field in fields:
        value = row.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    return ""


def _turing_example(row: dict[str, Any], trace_id: str, skips: SkipCounter) -> TraceExample | None:
    question = _first_text(row, _TURING_QUESTION_FIELDS)
    reasoning = _first_text(row, _TURING_REASONING_FIELDS)
    answer = _first_text(row, _TURING_ANSWER_FIELDS)
    if not question:
        skips.add("turing:missing question", trace_id)
        return None
    if not reasoning and not answer:
        skips.add("turing:missing reasoning and answer", trace_id)
        return None
    lines = [reasoning] if reasoning else []
    if answer:
        lines.append(f"Final answer: {answer}")
    return _user_example(question, "\n".join(lines), "turing", trace_id)


__all__ = ["GSM8K_HUB_ID", "TURING_HUB_ID", "champ_data_file", "load_champ", "load_gsm8k", "load_turing"]
