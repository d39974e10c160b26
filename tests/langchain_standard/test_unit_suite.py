"""LangChain's standard unit suite for chat models, run on a tiny local model folder."""

from __future__ import annotations

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from layerroute_agent import LayerRouteChat


class TestLayerRouteChatUnit(ChatModelUnitTests):
    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_model_dir) -> None:
        self._model_dir = str(tiny_model_dir)

    @property
    def chat_model_class(self) -> type[LayerRouteChat]:
        return LayerRouteChat

    @property
    def chat_model_params(self) -> dict:
        return {"model": getattr(self, "_model_dir", "unused-until-invoked"), "adapter": None}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
