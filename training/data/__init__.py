"""Data for training routers on agent traces: dataset rows -> mode-labelled examples -> token ids.

Data flow:

1. Loaders read a source and return :class:`TraceExample` objects: the chat-template messages so far,
   the next assistant reply in Qwen2.5's format (``target``), the tools, and a mode label
   (``"tool_call"`` or ``"planning"``). Every rejected row is counted by reason in a :class:`SkipCounter`.

   - :func:`load_bfcl` (BFCL training categories; evaluation categories raise) and :func:`load_champ`
     read files that ship in the installed ``bfcl-eval`` and ``champ-dataset`` distributions.
   - :func:`load_hermes`, :func:`load_glaive`, :func:`load_gsm8k` and :func:`load_turing` read a local
     .jsonl/.json/.parquet file or a Hugging Face hub dataset id.
   - :func:`load_bfcl_eval` keeps BFCL's full ground truth for accuracy checks.
   - :func:`load_bfcl_multi_turn` replays BFCL's multi-turn tasks against BFCL's simulated APIs, so the
     traces hold real tool results; the text replies after them come from a caller-given function.

2. :func:`mix_examples` caps examples per mode and shuffles; :func:`split_examples` splits by trace;
   :func:`build_training_set` does steps 1 and 2 for every source in one call.

3. :func:`render_example` applies the model's chat template and returns a :class:`RenderedExample`
   (``input_ids`` and ``prompt_length``), or ``None`` for an example longer than ``max_length``.
"""

from .bfcl import (
    EVAL_BFCL_CATEGORIES,
    SUPPORTED_BFCL_CATEGORIES,
    TRAIN_BFCL_CATEGORIES,
    BfclEvalItem,
    bfcl_data_file,
    bfcl_function_to_tool,
    bfcl_schema,
    is_eval_only_bfcl_category,
    load_bfcl,
    load_bfcl_eval,
)
from .bfcl_multi_turn import MULTI_TURN_CATEGORY, AnswerTurn, load_bfcl_multi_turn, parse_ground_truth_call
from .examples import (
    MODES,
    Mode,
    SkipCounter,
    TraceExample,
    assistant_message,
    assistant_target,
    log_skip_counts,
    tool_call_text,
)
from .mixing import build_training_set, count_examples, mix_examples, offer_unused_tools, split_examples
from .planning import GSM8K_HUB_ID, TURING_HUB_ID, champ_data_file, load_champ, load_gsm8k, load_turing
from .render import (
    CALL_FORMATS,
    END_OF_TURN,
    RenderedExample,
    end_of_turn_token,
    format_calls,
    render_example,
    render_examples,
    render_prompt,
)
from .sources import read_rows
from .traces import GLAIVE_HUB_ID, HERMES_HUB_ID, load_glaive, load_hermes

__all__ = [
    "CALL_FORMATS",
    "format_calls",
    "END_OF_TURN",
    "EVAL_BFCL_CATEGORIES",
    "GLAIVE_HUB_ID",
    "GSM8K_HUB_ID",
    "HERMES_HUB_ID",
    "MODES",
    "MULTI_TURN_CATEGORY",
    "SUPPORTED_BFCL_CATEGORIES",
    "TRAIN_BFCL_CATEGORIES",
    "TURING_HUB_ID",
    "AnswerTurn",
    "BfclEvalItem",
    "Mode",
    "RenderedExample",
    "SkipCounter",
    "TraceExample",
    "assistant_message",
    "assistant_target",
    "bfcl_data_file",
    "bfcl_function_to_tool",
    "bfcl_schema",
    "build_training_set",
    "champ_data_file",
    "count_examples",
    "end_of_turn_token",
    "is_eval_only_bfcl_category",
    "load_bfcl",
    "load_bfcl_eval",
    "load_bfcl_multi_turn",
    "load_champ",
    "load_glaive",
    "load_gsm8k",
    "load_hermes",
    "load_turing",
    "log_skip_counts",
    "mix_examples",
    "offer_unused_tools",
    "parse_ground_truth_call",
    "read_rows",
    "render_example",
    "render_examples",
    "render_prompt",
    "split_examples",
    "tool_call_text",
]
