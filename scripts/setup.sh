#!/usr/bin/env bash
# Create .venv and install layerroute-agent with the offline model pack, the agent, plot, benchmark and dev
# extras.
# torch is pinned to the CPU build 2.13.0 so that pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0" -e ".[offline,agents,plot,bench,dev]"
# Training and evaluation data files. --no-deps because bfcl-eval pins packages that clash with this stack;
# their data files are read, and the multi-turn replay imports bfcl-eval's simulated APIs (plain Python).
.venv/bin/python -m pip install --quiet --no-deps "bfcl-eval==2026.3.23" "champ-dataset==1.0.0"
# The benchmark's ChatHuggingFace engine. --no-deps because langchain-huggingface 1.2.3 pins
# huggingface-hub<2, which transformers 5 cannot use; it runs with the hub 2.x that transformers brings.
# llama-cpp-python (the `llama` extra) is left out: it compiles from source for minutes.
.venv/bin/python -m pip install --quiet --no-deps "langchain-huggingface==1.2.3"
