"""The capabilities ``LayerRouteChat`` declares to both LangChain standard suites."""

from __future__ import annotations

from layerroute_agent import LayerRouteChat


class LayerRouteCapabilities:
    """Properties shared by the unit and integration suites; list it before the suite class."""

    @property
    def chat_model_class(self) -> type[LayerRouteChat]:
        return LayerRouteChat

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
