"""Session fixtures giving real assets (see rejax.assets); conftest.py imports them.

The cache root is $REJAX_ASSETS (the Makefile sets it to .cache/assets, so assets are fetched once
per checkout), else `assets/` in the session's temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rejax import assets


def assets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
  """The cache root the fixtures fetch into (a plain function, so conftest needs no extra import)."""
  env = os.environ.get("REJAX_ASSETS")
  return Path(env) if env else tmp_path_factory.getbasetemp() / "assets"


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir(tmp_path_factory) -> Path:
  """A directory with the real Qwen3 tokenizer, for AutoTokenizer.from_pretrained."""
  return assets.fetch("qwen3-tokenizer", assets_root(tmp_path_factory))


@pytest.fixture(scope="session")
def llama31_tokenizer_dir(tmp_path_factory) -> Path:
  """A directory with the Llama-3.1 tokenizer, for AutoTokenizer.from_pretrained."""
  return assets.fetch("llama3.1-tokenizer", assets_root(tmp_path_factory))


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
  """A float32 SmolLM2-135M-Instruct directory, for AutoModelForCausalLM and AutoTokenizer."""
  pytest.importorskip("torch")
  return assets.fetch("smollm2", assets_root(tmp_path_factory))


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
  """all-MiniLM-L6-v2 in the sentence-transformers layout: the standard small baseline embedder."""
  return assets.fetch("all-minilm-l6-v2", assets_root(tmp_path_factory))
