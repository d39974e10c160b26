"""LangChain's standard unit suite for chat models, run on a tiny local model folder."""

from __future__ import annotations

import pytest
from langchain_tests.unit_tests import ChatModelUnitTests

from capabilities import LayerRouteCapabilities


class TestLayerRouteChatUnit(LayerRouteCapabilities, ChatModelUnitTests):
    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_model_dir) -> None:
        self._model_dir = str(tiny_model_dir)

    @property
    def chat_model_params(self) -> dict:
        return {"model": getattr(self, "_model_dir", "unused-until-invoked"), "adapter": None}

