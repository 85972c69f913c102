"""`rejax data pairs`: title -> body training records and a held-out dev set from a corpus alone (CACM)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from rejax.data.records import parse_record
from rejax.data.weak_pairs import build_title_pairs, has_body
from rejax.eval.beir import load_beir
from rejax.rows import read_rows

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACM = ROOT / "sample_data" / "cacm"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("pairs") / "cacm-pairs"
  build_title_pairs(CACM / "corpus.jsonl", out, domain="cacm", dev_queries=40, dev_docs=200, negatives=5)
  return out


def test_records_pair_each_title_with_its_own_body_and_other_documents_as_negatives(pairs):
  corpus = {d["_id"]: d for d in read_rows(CACM / "corpus.jsonl")}
  lines = (pairs / "train" / "cacm-formatted.jsonl").read_text().splitlines()
  summary = json.loads((pairs / "pairs.json").read_text())
  assert len(lines) == summary["train_records"] == summary["usable_docs"] - 40
  for n, line in enumerate(lines, start=1):
    record = parse_record(line, f"cacm-formatted.jsonl:{n}")  # the released schema
    doc = corpus[record["source_id"]]
    assert record["query"] == doc["title"] and record["pos"] == [doc["text"]]
    assert len(record["neg"]) == 5 and doc["text"] not in record["neg"]
    assert all(neg in {d["text"] for d in corpus.values()} for neg in record["neg"])


def test_only_documents_with_an_abstract_become_records(pairs):
  corpus = {d["_id"]: d for d in read_rows(CACM / "corpus.jsonl")}
  bylines_only = [d for d in corpus.values() if not has_body(d["text"], 20)]
  usable = json.loads((pairs / "pairs.json").read_text())["usable_docs"]
  assert bylines_only and len(bylines_only) == len(corpus) - usable
  assert not has_body("CACM December, 1958\nPerlis, A. J. Samelson,K.", 20)


def test_dev_set_is_held_out_of_training_and_loads_as_beir(pairs):
  dev = load_beir(pairs / "dev", split="dev")
  assert len(dev.queries) == 40 and len(dev.corpus) == 200
  train_texts = set()
  for line in (pairs / "train" / "cacm-formatted.jsonl").read_text().splitlines():
    record = json.loads(line)
    train_texts |= {record["query"], *record["pos"], *record["neg"]}
  corpus = {d["_id"]: d for d in read_rows(CACM / "corpus.jsonl")}
  for qid, judged in dev.qrels.items():
    (doc_id,) = judged
    assert dev.queries[qid] == corpus[doc_id]["title"]  # a dev title's own body is its one relevant document
    assert dev.corpus[doc_id] == corpus[doc_id]["text"]  # bodies without titles, like the training positives
    assert corpus[doc_id]["title"] not in train_texts and corpus[doc_id]["text"] not in train_texts


def test_cli_refuses_an_existing_output_and_leaves_it_unchanged(pairs, tmp_path):
  before = (pairs / "pairs.json").read_bytes()
  proc = subprocess.run([sys.executable, "-m", "rejax.cli", "data", "pairs", "--corpus", str(CACM / "corpus.jsonl"),
                         "--output", str(pairs)], capture_output=True, text=True, cwd=ROOT)
  assert proc.returncode == 1 and "already exists" in proc.stderr and "Traceback" not in proc.stderr
  assert (pairs / "pairs.json").read_bytes() == before
  proc = subprocess.run([sys.executable, "-m", "rejax.cli", "data", "pairs", "--corpus", str(CACM / "corpus.jsonl"),
                         "--output", str(tmp_path / "x"), "--dev-queries", "0"], capture_output=True, text=True,
                        cwd=ROOT)
  assert proc.returncode == 1 and "--dev-queries 0" in proc.stderr and not (tmp_path / "x").exists()
