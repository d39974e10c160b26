"""LangChain's standard integration suite for chat models, run on the real offline model (marked ``real_model``).

Run the whole suite with ``python -m pytest tests/langchain_standard -m real_model``. Turned off, because they
need other media or the network (each through the suite's own capability property):

- image, PDF and audio inputs (``supports_image_inputs``, ``supports_image_urls``,
  ``supports_image_tool_message``, ``supports_pdf_inputs``, ``supports_pdf_tool_message``,
  ``supports_audio_inputs``): the model reads text only, and these tests download their media;
- ``test_stream_time`` (``enable_vcr_tests``): it replays recorded HTTP calls, and this model makes none.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from capabilities import LayerRouteCapabilities

pytestmark = pytest.mark.real_model


class TestLayerRouteChatIntegration(LayerRouteCapabilities, ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _override_model(self, tiny_model_dir) -> None:
        # A second, tiny local model checks that a per-call `model=` really switches the model.
        self._override_dir = str(tiny_model_dir)

    @property
    def chat_model_params(self) -> dict:
        # The default model with its default adapter. Replies in this suite (a greeting, a joke as JSON, one
        # tool call) fit in 64 tokens, so the limit only stops a rambling reply from costing seconds per test.
        return {"max_tokens": 64}

    @property
    def standard_chat_model_params(self) -> dict:
        return {**super().standard_chat_model_params, "max_tokens": 64}

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str | None:
        return getattr(self, "_override_dir", None)
