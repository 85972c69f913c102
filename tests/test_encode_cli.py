"""`rejax encode` (docs/architecture.md#commands), checked against transformers on the same checkpoint."""

import json

import numpy as np
import pytest
import torch

from rejax.cli import main
from rejax.data.text import format_query, load_tokenizer, tokenize

TEXTS = ["a", "The mitochondria is the powerhouse of the cell. " * 6, "Why do leaves change colour?",
         "short text", "Photosynthesis converts light into chemical energy.", "x " * 90, "ok"]


def write_jsonl(path, texts):
  path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def transformers_embeddings(torch_model, tokenizer, texts, max_length):
  """One text at a time (no padding at all), last token, L2-normalised: an independent reference."""
  out = []
  for ids in tokenize(tokenizer, texts, max_length):
    with torch.no_grad():
      hidden = torch_model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
    out.append(hidden / np.linalg.norm(hidden))
  return np.stack(out)


@pytest.mark.parametrize("instruction", [None, "Given a Biology post, retrieve relevant passages."])
def test_encode_matches_transformers_in_input_order(tiny_model_factory, tmp_path, instruction):
  model_dir, torch_model = tiny_model_factory("llama31")
  write_jsonl(tmp_path / "in.jsonl", TEXTS)
  args = ["encode", "--model", str(model_dir), "--input", str(tmp_path / "in.jsonl"),
          "--output", str(tmp_path / "out.npy"), "--max-length", "48", "--batch-size", "4"]
  main(args + (["--instruction", instruction] if instruction else []))

  got = np.load(tmp_path / "out.npy")
  formatted = [format_query(t, instruction) for t in TEXTS]
  want = transformers_embeddings(torch_model, load_tokenizer(model_dir), formatted, 48)
  assert got.dtype == np.float32 and got.shape == (len(TEXTS), 64)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
  assert (got * want).sum(1).min() >= 0.99999


def test_encode_packed_equals_padded_row_for_row(tiny_model_factory, tmp_path):
  """--pack (the default) and --no-pack write the same matrix, row for row (packing only moves texts)."""
  model_dir, _ = tiny_model_factory("llama31")
  write_jsonl(tmp_path / "in.jsonl", TEXTS * 3)
  args = ["encode", "--model", str(model_dir), "--input", str(tmp_path / "in.jsonl"), "--max-length", "256",
          "--batch-size", "4"]
  main(args + ["--output", str(tmp_path / "packed.npy")])
  main(args + ["--output", str(tmp_path / "padded.npy"), "--no-pack"])
  packed, padded = np.load(tmp_path / "packed.npy"), np.load(tmp_path / "padded.npy")
  assert packed.shape == padded.shape == (3 * len(TEXTS), 64)
  assert (packed * padded).sum(1).min() >= 0.99999
  np.testing.assert_allclose(packed, padded, atol=2e-5)


def test_single_device_encoder_matches_transformers(tiny_model_factory):
  from rejax.eval.encode import Encoder

  model_dir, torch_model = tiny_model_factory("qwen3_tied")
  encoder = Encoder.from_pretrained(model_dir, max_length=32, batch_size=3)
  got = encoder.encode(TEXTS, progress=False)
  want = transformers_embeddings(torch_model, load_tokenizer(model_dir), TEXTS, 32)
  assert (got * want).sum(1).min() >= 0.99999


def test_bad_input_line_is_named(tiny_model_factory, tmp_path):
  model_dir, _ = tiny_model_factory("llama31")
  (tmp_path / "in.jsonl").write_text('{"text": "fine"}\n{"txt": "typo"}\n')
  with pytest.raises(SystemExit, match=r"in\.jsonl:2: missing field\(s\) text"):
    main(["encode", "--model", str(model_dir), "--input", str(tmp_path / "in.jsonl"),
          "--output", str(tmp_path / "out.npy")])
  assert not (tmp_path / "out.npy").exists()
