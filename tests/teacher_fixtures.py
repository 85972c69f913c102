"""Inputs of the `rejax data mine` / `rejax data score` tests: a small titled corpus with records whose positives
are its documents, and a tiny CrossEncoder (MiniLM's BERT config, random weights: a real CrossEncoder, built here
because no pretrained one is available offline). Built once per session directory; imported by the test modules."""

from __future__ import annotations

import json
import pathlib

import pytest

from rejax.rows import read_rows

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACM = ROOT / "sample_data" / "cacm"
INSTRUCTION = "Given a title, retrieve the article it belongs to."


def write_jsonl(path: pathlib.Path, rows) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


@pytest.fixture(scope="session")
def small_collection(tmp_path_factory) -> pathlib.Path:
  """DIR/corpus.jsonl (60 CACM documents with an abstract, cut to 40 words) and DIR/records/cacm-formatted.jsonl:
  12 records (title -> its `title\\ntext` document; the first two with a second positive, half with old negatives
  and scores to replace)."""
  root = tmp_path_factory.getbasetemp() / "teacher-small-collection"
  if (root / "records").is_dir():
    return root
  docs = [{**d, "text": " ".join(d["text"].split()[:40])}
          for d in read_rows(CACM / "corpus.jsonl") if len(d["text"].split()) > 40][:60]
  write_jsonl(root / "corpus.jsonl", docs)
  records = []
  for i, d in enumerate(docs[:12]):
    pos = [f"{d['title']}\n{d['text']}"]
    if i < 2:
      other = docs[50 + i]
      pos.append(f"{other['title']}\n{other['text']}")
    record = {"prompt": INSTRUCTION, "query": d["title"], "pos": pos, "source_id": d["_id"]}
    if i % 2:
      record.update(neg=["an old negative"], neg_scores=[0.5], pos_scores=[1.0] * len(pos))
    records.append(record)
  write_jsonl(root / "records" / "cacm-formatted.jsonl", records)
  return root


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory, minilm_dir) -> pathlib.Path:
  """A CrossEncoder saved by sentence-transformers: MiniLM's BERT config with one label, seeded random weights."""
  out = tmp_path_factory.getbasetemp() / "tiny-cross-encoder"
  if (out / "config_sentence_transformers.json").is_file():
    return out
  import torch
  from sentence_transformers import CrossEncoder
  from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

  raw = tmp_path_factory.mktemp("tiny-cross-encoder-raw")
  config = AutoConfig.from_pretrained(minilm_dir, num_labels=1)
  torch.manual_seed(0)
  AutoModelForSequenceClassification.from_config(config).save_pretrained(raw)
  AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(raw)
  CrossEncoder(str(raw), device="cpu").save_pretrained(str(out))
  return out
