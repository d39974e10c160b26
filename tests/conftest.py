"""Tiny random models and a tiny tokenizer with a chat template: no downloads, milliseconds to build."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from training.cli import train_main

VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# A small chat template written for these tests: system, user, assistant (with tool calls) and tool turns,
# tools listed in the system turn, in the same tag format as Qwen2.5.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %}\n{{ t | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{\"name\": \"{{ c.function.name }}\", "
    "\"arguments\": {{ c.function.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "What is the weather in Paris? It is sunny and 21 degrees.",
    '{"name": "get_weather", "arguments": {"city": "Lyon"}}',
    "Convert 20 EUR to USD. The answer is 21.6 USD. Plan: first call a tool, then answer.",
    "system user assistant tool tool_response Tools: function parameters type object string number",
] * 20


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer of 512 tokens on a few sentences."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_qwen2(seed: int = 0, attn: str = "sdpa") -> Qwen2ForCausalLM:
    """A random 4-block Qwen2 (hidden 64, grouped-query attention 4/2 heads, untied head)."""
    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=VOCAB_SIZE, max_position_embeddings=1024,
                         tie_word_embeddings=False, attn_implementation=attn)
    return Qwen2ForCausalLM(config).eval()


def tiny_llama(seed: int = 0, attn: str = "sdpa") -> LlamaForCausalLM:
    """A random 5-block Llama (hidden 48, 6/2 heads)."""
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=6,
                         num_key_value_heads=2, vocab_size=VOCAB_SIZE, max_position_embeddings=1024,
                         attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(params=["qwen2", "llama"])
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return tiny_qwen2() if request.param == "qwen2" else tiny_llama()


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: PreTrainedTokenizerFast) -> Path:
    """A saved tiny Qwen2 folder (safetensors + tokenizer) that ``LayerRouteChat(model=...)`` can load."""
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    model = tiny_qwen2(seed=1)
    model.generation_config.eos_token_id = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter folder that ``layerroute-train`` wrote after 3 steps on the tiny model."""
    output = tmp_path_factory.mktemp("run")
    code = train_main(["--model", str(tiny_model_dir), "--output-dir", str(output), "--steps", "3",
                       "--batch-size", "2", "--max-length", "1000", "--dtype", "float32", "--lora-rank", "4",
                       "--checkpoint-every", "2"])
    assert code == 0
    return output / "adapter"


def script_replies(llm: object, pieces: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    """Make ``llm``'s runtime reply with fixed text pieces; returns a dict that records the prompt and config.

    The routing decisions and timings still come from a real prefill of the prompt.
    """
    runtime = llm.runtime  # type: ignore[attr-defined]
    real_run_step = runtime.run_step
    seen: dict = {}

    def run_step(prompt_ids, config, *depth):
        seen["prompt"] = runtime.tokenizer.decode(prompt_ids)
        seen["config"] = config
        result = None
        for item in real_run_step(prompt_ids, config, *depth):
            result = item
        yield from pieces
        result.text = "".join(pieces)
        yield result

    monkeypatch.setattr(runtime, "run_step", run_step)
    return seen
