"""First steps with ``LayerRouteChat``: invoke, stream, a tool call, and the compute report of the calls.

Run it from the repository root, with the project's virtualenv active::

    python examples/quickstart.py

The README's "Use" section shows this script's output. It makes three short calls (at most 48 new
tokens each) on the offline default model.
"""

from __future__ import annotations

from langchain_core.tools import tool

from layerroute_agent import LayerRouteChat

COMPUTE_KEYS = ("mode", "blocks_skipped", "flops_executed", "flops_full", "tokens_in", "tokens_out")


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Weather in {city}: 14 C, partly cloudy."


def main() -> None:
    llm = LayerRouteChat(max_tokens=48)

    reply = llm.invoke("Name one prime number greater than 10. Reply with the number only.")
    print("invoke:", repr(reply.text))
    compute = reply.response_metadata["compute"]
    print("compute:", {key: compute[key] for key in COMPUTE_KEYS})

    print("stream:", end=" ")
    for chunk in llm.stream("List the first five prime numbers, separated by commas."):
        print(repr(chunk.text), end=" ", flush=True)
    print()

    reply = llm.bind_tools([get_weather]).invoke("What is the weather in Lyon right now?")
    print("tool_calls:", [(call["name"], call["args"]) for call in reply.tool_calls])

    print()
    print(llm.compute_report().to_text())


if __name__ == "__main__":
    main()
