"""layerroute_agent: learnt per-block routing for small decoders in LangChain agents.

The main entry point is :class:`LayerRouteChat`; :class:`ComputeReportHandler` gathers the compute
records of a whole agent run.
"""

from layerroute_agent._errors import LayerRouteWarning
from layerroute_agent.chat_model import LayerRouteChat
from layerroute_agent.compute_report import ComputeReportHandler, ComputeTracker, EpisodeReport, StepRecord
from layerroute_agent.loading import DEFAULT_MODEL, LoadedModel, load_model
from layerroute_agent.offline_pack import OFFLINE_PACK_NAME

__all__ = [
    "DEFAULT_MODEL",
    "OFFLINE_PACK_NAME",
    "ComputeReportHandler",
    "ComputeTracker",
    "EpisodeReport",
    "LayerRouteChat",
    "LayerRouteWarning",
    "LoadedModel",
    "StepRecord",
    "load_model",
]
