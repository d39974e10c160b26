"""First steps with ``LayerRouteChat``: invoke, stream, a tool call, and the compute report of the calls.

Run it from the repository root, with the project's virtualenv active::

    python examples/quickstart.py
    python examples/quickstart.py --draft-tokens 0   # decode one token per pass

The README's "Use" section shows this script's output. It makes three short calls (at most 48 new
tokens each) on the offline default model.
"""

from __future__ import annotations

import argparse

from langchain_core.tools import tool

from layerroute_agent import LayerRouteChat

COMPUTE_KEYS = ("mode", "blocks_skipped", "flops_executed", "flops_full", "tokens_in", "tokens_out")


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Weather in {city}: 14 C, partly cloudy."


def main() -> None:
    parser = argparse.ArgumentParser(description="Invoke, stream and call a tool with LayerRouteChat.")
    parser.add_argument("--draft-tokens", type=int, default=LayerRouteChat.model_fields["draft_tokens"].default,
                        help="max drafted tokens per decode pass (default 4); 0 decodes one token per pass")
    args = parser.parse_args()
    if args.draft_tokens < 0:
        parser.error(f"--draft-tokens must be >= 0 (0 turns drafting off), got {args.draft_tokens}")
    llm = LayerRouteChat(max_tokens=48, draft_tokens=args.draft_tokens)

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
