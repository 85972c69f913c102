"""Formatting and tokenisation: the rules of docs/method.md#embedding, on the real Qwen3 and Llama-3.1 tokenizers."""

import jax.numpy as jnp
import numpy as np
import pytest

from rejax.data.text import bucket_length, format_query, load_tokenizer, pad_batch, tokenize
from rejax.models.pooling import last_token_pool


def test_query_format_is_the_papers():
  assert format_query("Why is the sky blue?", "Given a Biology post, retrieve relevant passages.") == (
      "Instruct: Given a Biology post, retrieve relevant passages.\nQuery: Why is the sky blue?")
  assert format_query("plain document", None) == "plain document"


@pytest.fixture(params=["qwen3", "llama31"])
def tokenizer(request, qwen3_tokenizer_dir, llama31_tokenizer_dir):
  return load_tokenizer(qwen3_tokenizer_dir if request.param == "qwen3" else llama31_tokenizer_dir)


def test_eos_appended_to_the_tokenizers_own_ids(tokenizer):
  text = "Hello world, this is a test."
  plain = tokenizer(text)["input_ids"]  # the tokenizer's defaults (Llama adds BOS, Qwen3 nothing)
  assert tokenize(tokenizer, [text], 64) == [plain + [tokenizer.eos_token_id]]


def test_truncation_keeps_the_final_eos(tokenizer):
  text = " ".join(f"word{i}" for i in range(200))
  plain = tokenizer(text)["input_ids"]
  (ids,) = tokenize(tokenizer, [text], 16)
  assert len(ids) == 16
  assert ids == plain[:15] + [tokenizer.eos_token_id]


def test_eos_not_doubled_when_the_text_already_ends_with_it(tokenizer):
  text = "already terminated" + tokenizer.eos_token
  (ids,) = tokenize(tokenizer, [text], 64)
  assert ids[-1] == tokenizer.eos_token_id and ids[-2] != tokenizer.eos_token_id


def test_last_token_pool_finds_the_last_real_token_for_any_padding():
  hidden = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
  right = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  left = jnp.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
  np.testing.assert_array_equal(last_token_pool(hidden, right), hidden[jnp.array([0, 1]), jnp.array([2, 4])])
  np.testing.assert_array_equal(last_token_pool(hidden, left), hidden[:, 4])


def test_padding_and_buckets():
  ids, mask = pad_batch([[5, 6, 7], [8]], 4, pad_id=0)
  np.testing.assert_array_equal(ids, [[5, 6, 7, 0], [8, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
  assert [bucket_length(n, 512) for n in (1, 16, 17, 100, 300, 600)] == [16, 16, 32, 128, 512, 512]
  with pytest.raises(ValueError, match="sequence 0 has 3 tokens"):
    pad_batch([[1, 2, 3]], 2, pad_id=0)
