"""Warning class of the package."""


class LayerRouteWarning(UserWarning):
    """Misuse of layerroute_agent that the caller can fix (for example an ignored parameter)."""


__all__ = ["LayerRouteWarning"]
