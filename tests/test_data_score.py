"""`rejax data score`: teacher scores against sentence-transformers called here (`encode` + `similarity`,
`CrossEncoder.predict`), a decoder's against its embeddings, records `rejax data convert` takes, bad inputs refused
in one line before any model loads."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from rejax.cli import main
from rejax.data.records import parse_record
from rejax.data.text import format_query
from tests.teacher_fixtures import tiny_cross_encoder_dir, write_jsonl  # noqa: F401

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "reason_embed" / "biology-formatted.jsonl"


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory) -> pathlib.Path:
  """Four sample biology records (cut to 3 negatives and 60 words a text), one with old teacher scores."""
  rows = []
  for i, line in enumerate(SAMPLE.read_text().splitlines()[:4]):
    r = json.loads(line)
    cut = lambda texts: [" ".join(t.split()[:60]) for t in texts]  # noqa: E731
    r = {k: v for k, v in r.items() if not k.endswith("_scores")}
    r.update(pos=cut(r["pos"]), neg=cut(r["neg"][:3]))
    if i == 0:
      r.update(pos_scores=[9.0] * len(r["pos"]), neg_scores=[9.0] * len(r["neg"]))
    rows.append(r)
  return write_jsonl(tmp_path_factory.mktemp("score-in") / "biology-formatted.jsonl", rows).parent


def _score(*flags):
  main(["data", "score", *map(str, flags)])


def _read(directory: pathlib.Path) -> list[dict]:
  path = directory / "biology-formatted.jsonl"
  return [parse_record(line, f"{path}:{n}") for n, line in enumerate(path.read_text().splitlines(), 1)]


def test_bi_encoder_scores_are_sentence_transformers_similarity(records_dir, minilm_dir, tmp_path):
  from sentence_transformers import SentenceTransformer

  _score("--teacher", minilm_dir, "--input", records_dir, "--output", tmp_path / "out")
  model = SentenceTransformer(str(minilm_dir), device="cpu")
  inputs = [json.loads(line) for line in (records_dir / "biology-formatted.jsonl").open()]
  scored = _read(tmp_path / "out")
  for r, got in zip(inputs, scored, strict=True):
    query = model.encode([format_query(r["query"], r["prompt"])])
    expected = model.similarity(query, model.encode(r["pos"] + r["neg"])).numpy()[0]
    np.testing.assert_allclose(got["pos_scores"] + got["neg_scores"], expected, atol=1e-5)
    assert {k: v for k, v in got.items() if not k.endswith("_scores")} == \
        {k: v for k, v in r.items() if not k.endswith("_scores")}
  summary = json.loads((tmp_path / "out" / "score.json").read_text())
  assert summary["kind"] == "sentence-transformers" and summary["records"] == 4
  assert summary["mean_pos_score"] > summary["mean_neg_score"]  # MiniLM tells the positives apart


def test_cross_encoder_scores_are_its_predictions_or_logits(records_dir, tiny_cross_encoder_dir, tmp_path):
  import torch
  from sentence_transformers import CrossEncoder

  _score("--teacher", tiny_cross_encoder_dir, "--input", records_dir, "--output", tmp_path / "out")
  _score("--teacher", tiny_cross_encoder_dir, "--input", records_dir, "--output", tmp_path / "logits", "--logits")
  model = CrossEncoder(str(tiny_cross_encoder_dir), device="cpu")
  inputs = [json.loads(line) for line in (records_dir / "biology-formatted.jsonl").open()]
  for r, got, logits in zip(inputs, _read(tmp_path / "out"), _read(tmp_path / "logits"), strict=True):
    pairs = [(r["query"], d) for d in r["pos"] + r["neg"]]
    np.testing.assert_allclose(got["pos_scores"] + got["neg_scores"], model.predict(pairs), atol=1e-5)
    np.testing.assert_allclose(logits["pos_scores"] + logits["neg_scores"],
                               model.predict(pairs, activation_fn=torch.nn.Identity()), atol=1e-5)


@pytest.mark.slow  # the Encoder is checked against transformers by the parity tests; this is its plumbing
def test_decoder_scores_are_the_inner_products_of_its_embeddings(records_dir, tiny_model_factory, tmp_path):
  from rejax.eval.encode import Encoder

  model_dir, _ = tiny_model_factory("qwen3_tied")
  _score("--teacher", model_dir, "--input", records_dir, "--output", tmp_path / "out", "--max-length", 64)
  encoder = Encoder.from_pretrained(model_dir, max_length=64)
  for r, got in zip([json.loads(line) for line in (records_dir / "biology-formatted.jsonl").open()],
                    _read(tmp_path / "out"), strict=True):
    query = encoder.encode([r["query"]], instruction=r["prompt"], progress=False)
    docs = encoder.encode(r["pos"] + r["neg"], progress=False)
    np.testing.assert_allclose(got["pos_scores"] + got["neg_scores"], (docs @ query[0]).tolist(), atol=1e-5)


@pytest.mark.slow  # mined records convert in the default suite (test_data_mine); these add pos/neg_scores
def test_scored_records_convert_with_their_scores(records_dir, tiny_cross_encoder_dir, tmp_path):
  from rejax.data.convert import convert

  _score("--teacher", tiny_cross_encoder_dir, "--input", records_dir / "biology-formatted.jsonl", "--output",
         tmp_path / "out")
  manifest = convert([str(tmp_path / "out" / "biology-formatted.jsonl")], tmp_path / "arrayrecord")
  assert manifest["records"] == 4


@pytest.mark.parametrize("case", ["missing_neg", "bm25", "logits", "output"])
def test_bad_input_is_one_line_before_any_model_loads(case, records_dir, minilm_dir, tmp_path):
  flags = ["--teacher", tmp_path / "no-such-model", "--input", records_dir, "--output", tmp_path / "o"]
  if case == "missing_neg":
    bad = write_jsonl(tmp_path / "in" / "x-formatted.jsonl", [{"prompt": "p", "query": "q", "pos": ["d"]}])
    flags[3], expected = bad, f"{bad}:1: missing field(s) neg"
  elif case == "bm25":
    flags[1], expected = "bm25", "--teacher bm25: BM25 scores depend on a corpus's statistics"
  elif case == "logits":
    flags[1], expected = minilm_dir, "--logits: only a CrossEncoder has logits"
    flags.append("--logits")
  else:
    (tmp_path / "o").mkdir()
    expected = f"--output {tmp_path / 'o'}: already exists"
  with pytest.raises(SystemExit) as exit_info:
    _score(*flags)
  message = str(exit_info.value.code)
  assert message.startswith("rejax data score: error: ") and expected in message and "\n" not in message
