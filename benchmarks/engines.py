"""The engines that the step-latency benchmark times, each behind the same small interface.

An engine turns one :class:`~benchmarks.agent_steps.AgentStep` into a :class:`Measurement`: the prompt is
rendered by the model's chat template (tools included), the engine generates ``step.new_tokens`` tokens
greedily, and the wall clock runs around the whole user-level call. Engines that let the caller suppress
the end-of-turn token (transformers ``generate``, the ChatHuggingFace pipeline, llama.cpp) generate exactly
that many tokens. ``LayerRouteChat`` stops at its end-of-turn token, so a step that ends early is extended
to ``new_tokens`` at its own measured decode rate (:func:`normalised_step_seconds`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.streamers import BaseStreamer

from benchmarks.agent_steps import AgentStep
from layerroute_agent import LayerRouteChat
from layerroute_agent.runtime import FULL_DEPTH_REASONS
from layerroute_agent.tool_calls import to_template_messages


@dataclass
class Measurement:
    """Measurements of one engine on one step, in one round."""

    engine: str
    step: str
    round_index: int
    prompt_tokens: int
    generated_tokens: int
    decode_calls: int
    """Tokens decoded after the first, i.e. the forward passes of one-token decoding: a reply of ``n`` forced
    tokens has ``n - 1``. With drafted decoding the engine ran fewer, longer passes."""
    prefill_seconds: float
    decode_seconds: float
    """Time of decoding those tokens (forward passes and sampling)."""
    step_seconds: float
    """Wall-clock time of the whole call: template, tokenizer, generation, detokenizer, parsing."""
    peak_memory_bytes: int | None
    """Peak resident (CPU) or allocated (CUDA) memory during the step above the level before it."""
    blocks_run: int
    routers_evaluated: int
    tokens_drafted: int = 0
    """Drafted tokens that decode passes checked (``LayerRouteChat`` only)."""
    tokens_accepted: int = 0
    """Drafted tokens accepted into the reply."""
    extra_draft_flops: int = 0
    """FLOPs the step ran beyond one-token decoding of the same reply: rejected drafts, and accepted ones
    after the reply's end."""


def normalised_step_seconds(measurement: Measurement, new_tokens: int) -> float | None:
    """Return the step time extended to ``new_tokens`` generated tokens at the step's own decode rate.

    A step that generated ``n`` tokens decoded ``decode_calls`` tokens after the first; ``new_tokens``
    tokens need ``new_tokens - 1``. The missing (or surplus) tokens are added at the measured time per
    decoded token. Returns ``None`` when the step decoded no token, because then there is no rate to extend with.
    """
    missing = (new_tokens - 1) - measurement.decode_calls
    if missing == 0:
        return measurement.step_seconds
    if measurement.decode_calls == 0 or measurement.decode_seconds <= 0:
        return None
    return measurement.step_seconds + missing * measurement.decode_seconds / measurement.decode_calls


class MemoryProbe:
    """Peak memory of one step above the level before it: VmHWM on Linux CPUs, the allocator on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._start = 0

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"/proc/self/status has no {field} line")

    def start(self) -> None:
        """Reset the peak to the current level."""
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return
        try:
            # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0).
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self._start = self._status_kb("VmRSS") * 1024
        except OSError:
            self._start = -1

    def peak_above_start(self) -> int | None:
        """Return the peak bytes above the level at :meth:`start`, or ``None`` where it cannot be read."""
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self._start
        if self._start < 0:
            return None
        return max(0, self._status_kb("VmHWM") * 1024 - self._start)


class _TimingStreamer(BaseStreamer):
    """Records when transformers ``generate`` hands over the prompt and each new token."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens = 0

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) > 1:
            self.tokens += value.numel()

    def end(self) -> None:
        pass

    def split(self) -> tuple[float, float, int]:
        """Return ``(prefill seconds, decode seconds, decode calls)``: prompt put -> first token -> last token."""
        if len(self.times) < 2:
            raise RuntimeError("generate streamed no new token; check max_new_tokens")
        return self.times[1] - self.times[0], self.times[-1] - self.times[1], len(self.times) - 2


class Engine(Protocol):
    """Interface the benchmark loop needs from an engine."""

    name: str
    label: str

    def unserved_reason(self, step: AgentStep) -> str | None:
        """Return why this engine cannot run ``step``, or ``None`` when it can."""

    def run(self, step: AgentStep, round_index: int) -> Measurement:
        """Run one step and measure it."""

    def weights_bytes(self) -> int:
        """Return the bytes of model weights this engine keeps loaded."""


def _prompt_ids(tokenizer: PreTrainedTokenizerBase, step: AgentStep) -> list[int]:
    text = tokenizer.apply_chat_template(to_template_messages(step.messages), tools=step.tools or None,
                                         add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _end_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def _parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _greedy_generate_kwargs(tokenizer: PreTrainedTokenizerBase, new_tokens: int) -> dict[str, Any]:
    # min_new_tokens masks the end-of-turn tokens until new_tokens tokens exist, so every call has equal length.
    return {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "temperature": None,
            "top_p": None, "top_k": None, "repetition_penalty": None,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}


class TransformersGenerate:
    """(1) Plain transformers ``generate`` on the base model, no routers, greedy."""

    name = "transformers"
    label = "transformers generate"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.num_blocks = model.config.num_hidden_layers

    def unserved_reason(self, step: AgentStep) -> str | None:
        return None

    def weights_bytes(self) -> int:
        return _parameter_bytes(self.model)

    def run(self, step: AgentStep, round_index: int) -> Measurement:
        probe = MemoryProbe(self.device)
        probe.start()
        started = time.perf_counter()
        prompt_ids = _prompt_ids(self.tokenizer, step)
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        streamer = _TimingStreamer()
        output = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                                     **_greedy_generate_kwargs(self.tokenizer, step.new_tokens))
        self.tokenizer.decode(output[0, len(prompt_ids):], skip_special_tokens=False)
        step_seconds = time.perf_counter() - started
        prefill, decode, calls = streamer.split()
        return Measurement(self.name, step.name, round_index, len(prompt_ids), streamer.tokens, calls, prefill,
                           decode, step_seconds, probe.peak_above_start(), self.num_blocks, 0)


class LayerRouteEngine:
    """(2) ``LayerRouteChat`` with ``routing=False`` (every block runs), or (3) with its routing adapter."""

    def __init__(self, llm: LayerRouteChat, name: str, label: str) -> None:
        self.llm, self.name, self.label = llm, name, label
        self.num_blocks = llm.runtime.routed.num_blocks

    def unserved_reason(self, step: AgentStep) -> str | None:
        return None

    def weights_bytes(self) -> int:
        return _parameter_bytes(self.llm.runtime.routed)

    def run(self, step: AgentStep, round_index: int) -> Measurement:
        probe = MemoryProbe(self.llm.device)
        probe.start()
        started = time.perf_counter()
        model = self.llm.bind_tools(step.tools) if step.tools else self.llm
        reply = model.invoke(step.messages, max_tokens=step.new_tokens)
        step_seconds = time.perf_counter() - started
        compute = reply.response_metadata["compute"]
        generated = compute["tokens_out"]
        # One-token decoding would run a pass for each pass run here plus each accepted draft.
        calls = compute["decode_passes"] + compute["tokens_accepted"]
        routers = 0 if compute["routing"] in FULL_DEPTH_REASONS else self.num_blocks
        blocks = len(compute["blocks_run"])
        one_token = self.llm.runtime.counter.step(compute["tokens_in"], calls, blocks, routers)
        return Measurement(self.name, step.name, round_index, compute["tokens_in"], generated, calls,
                           compute["prefill_seconds"], compute["decode_seconds"], step_seconds,
                           probe.peak_above_start(), blocks, routers, compute["tokens_drafted"],
                           compute["tokens_accepted"], compute["flops_executed"] - one_token)


def _system_turn(tokenizer: PreTrainedTokenizerBase, tools: list[dict[str, Any]]) -> str | None:
    """Return the system turn text that the chat template writes for ``tools``, if it uses ChatML markers."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tools=tools, tokenize=False)
    opening = "<|im_start|>system\n"
    start = text.find(opening)
    end = text.find("<|im_end|>", start)
    if start < 0 or end < 0:
        return None
    return text[start + len(opening):end]


class ChatHuggingFaceEngine:
    """(4) ``ChatHuggingFace`` over a ``HuggingFacePipeline`` of the base model.

    ``ChatHuggingFace`` 1.2.3 over a local pipeline accepts system, human and assistant text only, and
    drops bound tools when it renders the prompt. So it serves steps without tool results, and tool-call
    steps get the tools as the same system text that the chat template writes for them.
    """

    name = "chat_huggingface"
    label = "ChatHuggingFace pipeline"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: str) -> None:
        from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
        from transformers import pipeline

        self.model, self.tokenizer, self.device = model, tokenizer, device
        pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
        self.chat = ChatHuggingFace(llm=HuggingFacePipeline(pipeline=pipe), tokenizer=tokenizer)
        self.num_blocks = model.config.num_hidden_layers

    def unserved_reason(self, step: AgentStep) -> str | None:
        for message in step.messages:
            if not isinstance(message, (SystemMessage, HumanMessage, AIMessage)):
                return f"it rejects {type(message).__name__} history"
            if isinstance(message, AIMessage) and message.tool_calls:
                return "it cannot render assistant tool calls"
        if not isinstance(step.messages[-1], HumanMessage):
            return "it needs a human message last"
        if step.tools and _system_turn(self.tokenizer, step.tools) is None:
            return "the chat template has no ChatML system turn to carry the tools"
        return None

    def weights_bytes(self) -> int:
        return _parameter_bytes(self.model)

    def _messages(self, step: AgentStep) -> list[Any]:
        if not step.tools:
            return step.messages
        system = _system_turn(self.tokenizer, step.tools)
        return [SystemMessage(system), *(m for m in step.messages if not isinstance(m, SystemMessage))]

    def run(self, step: AgentStep, round_index: int) -> Measurement:
        probe = MemoryProbe(self.device)
        probe.start()
        started = time.perf_counter()
        streamer = _TimingStreamer()
        kwargs = {**_greedy_generate_kwargs(self.tokenizer, step.new_tokens), "streamer": streamer,
                  "return_full_text": False}
        messages = self._messages(step)
        self.chat.invoke(messages, pipeline_kwargs=kwargs)
        step_seconds = time.perf_counter() - started
        prefill, decode, calls = streamer.split()
        prompt_text = self.chat._to_chat_prompt(messages)
        prompt_tokens = len(self.tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
        return Measurement(self.name, step.name, round_index, prompt_tokens, streamer.tokens, calls, prefill,
                           decode, step_seconds, probe.peak_above_start(), self.num_blocks, 0)


_LLAMA_PROBE = """
import sys
from llama_cpp import Llama
llama = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=int(sys.argv[2]), verbose=False)
llama.eval([1, 2, 3, 4])
"""


def llama_cpp_failure(gguf_path: Path, threads: int, timeout_s: float = 300.0) -> str | None:
    """Load the GGUF in llama.cpp and evaluate four tokens in a child process; return why that failed, or ``None``.

    A llama.cpp build can die with SIGILL on a CPU that lacks an instruction it was compiled for (seen
    with llama-cpp-python 0.3.36 built from source in a VM that reports AMX). In this process that signal
    would end the whole benchmark, so the engine is tried in a child first.
    """
    try:
        done = subprocess.run([sys.executable, "-c", _LLAMA_PROBE, str(gguf_path), str(threads)],
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"loading the GGUF in llama.cpp timed out after {timeout_s:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = str(-done.returncode)
        cause = f"it died with signal {name}"
        if done.returncode == -signal.SIGILL:
            cause += " (the build uses an instruction this CPU lacks; rebuild with CMAKE_ARGS=\"-DGGML_NATIVE=OFF\")"
        if done.stderr.strip():
            cause += f"; its stderr ended: {done.stderr.strip()[-300:]}"
    else:
        cause = f"it exited with code {done.returncode}: {done.stderr.strip()[-300:]}"
    return f"llama.cpp failed a four-token test run in a child process: {cause}"


class LlamaCppEngine:
    """(5) ``llama-cpp-python`` on the Q4_K_M GGUF of the same model, fed the same prompt token ids."""

    name = "llama_cpp"
    label = "llama.cpp Q4_K_M"

    def __init__(self, gguf_path: Path, tokenizer: PreTrainedTokenizerBase, threads: int, context: int,
                 num_blocks: int) -> None:
        from llama_cpp import Llama

        self.gguf_path, self.tokenizer, self.num_blocks = gguf_path, tokenizer, num_blocks
        self.llama = Llama(model_path=str(gguf_path), n_ctx=context, n_threads=threads, n_threads_batch=threads,
                           verbose=False)
        # The end-of-turn tokens get -inf so that every step generates exactly max_tokens tokens.
        self.no_end = {token_id: float("-inf") for token_id in _end_token_ids(tokenizer)}

    def unserved_reason(self, step: AgentStep) -> str | None:
        return None

    def weights_bytes(self) -> int:
        return os.path.getsize(self.gguf_path)

    def run(self, step: AgentStep, round_index: int) -> Measurement:
        probe = MemoryProbe("cpu")
        probe.start()
        started = time.perf_counter()
        prompt_ids = _prompt_ids(self.tokenizer, step)
        # reset() drops the evaluated prefix, which llama-cpp-python would otherwise reuse on a repeated prompt.
        self.llama.reset()
        times = []
        for _chunk in self.llama.create_completion(prompt_ids, max_tokens=step.new_tokens, temperature=0.0,
                                                   logit_bias=self.no_end, stream=True):
            times.append(time.perf_counter())
        step_seconds = time.perf_counter() - started
        generated = self.llama.n_tokens - len(prompt_ids) + 1
        if not times:
            raise RuntimeError(f"llama.cpp streamed nothing for step {step.name!r}")
        return Measurement(self.name, step.name, round_index, len(prompt_ids), generated, generated - 1,
                           times[0] - started, times[-1] - times[0], step_seconds, probe.peak_above_start(),
                           self.num_blocks, 0)


__all__ = [
    "ChatHuggingFaceEngine",
    "Engine",
    "LayerRouteEngine",
    "LlamaCppEngine",
    "Measurement",
    "MemoryProbe",
    "TransformersGenerate",
    "llama_cpp_failure",
    "normalised_step_seconds",
]
