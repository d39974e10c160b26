"""PNG chart of an episode report: FLOPs per agent step, coloured by mode, beside the full-depth FLOPs.

Needs matplotlib (the ``plot`` extra). The figure is drawn on an Agg canvas without ``pyplot``, so it
works with no display and leaves the caller's matplotlib backend and open figures alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layerroute_agent.compute_report import EpisodeReport

MODE_COLOURS = {"tool_call": "#1f77b4", "planning": "#ff7f0e"}
FULL_DEPTH_COLOUR = "#c7c7c7"
OTHER_MODE_COLOUR = "#7f7f7f"
_BAR_WIDTH = 0.38


def _matplotlib() -> tuple[Any, Any, Any]:
    """Import and return matplotlib's ``Figure``, ``FigureCanvasAgg`` and ``Patch`` classes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as err:
        raise ImportError(
            "EpisodeReport.plot needs matplotlib, which is not installed. "
            "Install it with: pip install 'layerroute-agent[plot]'"
        ) from err
    return Figure, FigureCanvasAgg, Patch


def _step_label(index: int, mode: str, tool_calls: list[str]) -> str:
    return f"{index}\n" + ("\n".join(tool_calls) if tool_calls else mode)


def plot_episode(report: EpisodeReport, path: str | Path) -> Path:
    """Draw the FLOPs of every step of ``report`` and write the chart to ``path`` as PNG.

    Raises:
        ImportError: if matplotlib is not installed.
        ValueError: if the report has no steps or ``path`` does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"The chart is written as PNG, so the path must end in .png, got {str(path)!r}")
    if not report.steps:
        raise ValueError("The episode report has no steps to plot. Pass a ComputeReportHandler in "
                         "config={'callbacks': [handler]} of the run, or plot llm.compute_report() after a call")
    figure_class, canvas_class, patch_class = _matplotlib()

    steps = report.steps
    positions = range(len(steps))
    executed = [step.flops_executed / 1e9 for step in steps]
    full = [step.flops_full / 1e9 for step in steps]
    colours = [MODE_COLOURS.get(step.mode, OTHER_MODE_COLOUR) for step in steps]

    figure = figure_class(figsize=(max(7.0, 1.1 * len(steps) + 3.0), 4.8), dpi=120, layout="constrained")
    canvas_class(figure)
    axes = figure.add_subplot()
    run_bars = axes.bar([x - _BAR_WIDTH / 2 for x in positions], executed, _BAR_WIDTH, color=colours)
    axes.bar([x + _BAR_WIDTH / 2 for x in positions], full, _BAR_WIDTH, color=FULL_DEPTH_COLOUR, hatch="//",
             edgecolor="white")
    axes.bar_label(run_bars, labels=[f"{step.flops_saved_share:.1%}" for step in steps], padding=2, fontsize=8)

    axes.set_xticks(list(positions), [_step_label(i, s.mode, s.tool_calls) for i, s in enumerate(steps, start=1)],
                    fontsize=8)
    axes.set_xlabel("agent step (one model call)")
    axes.set_ylabel("GFLOPs")
    saved = 1.0 - report.flops_executed / report.flops_full if report.flops_full else 0.0
    axes.set_title(f"FLOPs per agent step: {report.flops_executed / 1e9:.1f} of {report.flops_full / 1e9:.1f} "
                   f"GFLOPs run ({saved:.1%} saved)", fontsize=10)
    axes.margins(y=0.12)

    present = {step.mode for step in steps}
    modes = [mode for mode in MODE_COLOURS if mode in present] + sorted(present - set(MODE_COLOURS))
    handles = [patch_class(color=MODE_COLOURS.get(mode, OTHER_MODE_COLOUR), label=f"run: {mode}") for mode in modes]
    handles.append(patch_class(facecolor=FULL_DEPTH_COLOUR, hatch="//", edgecolor="white",
                               label="full depth (every block)"))
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                title="label above a bar:\nshare of FLOPs saved", title_fontsize=8)

    figure.savefig(path, format="png")
    return path


__all__ = ["plot_episode"]
