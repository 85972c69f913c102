"""Weakly supervised training data from a corpus alone: each titled document's title is a query for its own body.

    corpus.jsonl ({"_id", "title", "text"})
      -> documents with a real body (an abstract, not just a byline)
      -> a held-out dev split, written as a BEIR directory (its titles as queries, qrels/dev.tsv)
      -> training records {prompt, query = title, pos = [body], neg = BM25 neighbours of the title}
         written as `{domain}-formatted.jsonl`, the released format `rejax train` and `rejax data convert` read

Only the documents are used: no query or relevance judgment of any collection goes in, so a collection's
own queries stay a held-out test (this is unsupervised adaptation to a corpus, as in inverse-cloze and
title-abstract pretraining). Hard negatives are the documents BM25 ranks highest for the title, the
document itself excluded; the sampler draws G-1 of them per step.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile
from typing import Sequence

import numpy as np

from rejax.rows import CORPUS_FIELDS, read_rows

GENERIC_INSTRUCTION = "Given a search query, retrieve relevant documents that answer it."


def has_body(text: str, min_words: int) -> bool:
  """Whether a document body holds a line of at least `min_words` words (an abstract, not a byline)."""
  return any(len(line.split()) >= min_words for line in text.splitlines())


def bm25_neighbours(titles: Sequence[str], bodies: Sequence[str], k: int) -> np.ndarray:
  """[N, k] indices of the bodies BM25 ranks highest for each title, the title's own body left out."""
  import bm25s

  retriever = bm25s.BM25()
  retriever.index(bm25s.tokenize(list(bodies), stopwords="en", show_progress=False), show_progress=False)
  tokens = bm25s.tokenize(list(titles), stopwords="en", return_ids=False, show_progress=False)
  found, _ = retriever.retrieve(tokens, k=min(k + 1, len(bodies)), show_progress=False, n_threads=1)
  return np.array([[j for j in row if j != i][:k] for i, row in enumerate(found)])


def build_title_pairs(corpus_file: str | pathlib.Path, output: str | pathlib.Path, *, domain: str,
                      instruction: str = GENERIC_INSTRUCTION, dev_queries: int = 100, dev_docs: int = 300,
                      negatives: int = 10, min_body_words: int = 20, seed: int = 0) -> dict:
  """Writes `output/train/{domain}-formatted.jsonl`, the BEIR dev set `output/dev/` and `output/pairs.json`
  (these counts and settings), built aside and renamed into place whole; returns the counts."""
  final = pathlib.Path(output)
  if final.exists():
    raise FileExistsError(f"{final}: already exists; remove it or choose another --output")
  docs = read_rows(corpus_file, CORPUS_FIELDS, unique="_id", allow_empty=False)
  usable = [d for d in docs if (d.get("title") or "").strip() and has_body(d["text"], min_body_words)]
  if len(usable) < dev_queries + 2 * negatives:
    raise ValueError(f"{corpus_file}: only {len(usable)} documents have a title and a body of >= "
                     f"{min_body_words} words; too few for {dev_queries} dev queries")
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(usable))
  dev, train = [usable[i] for i in order[:dev_queries]], [usable[i] for i in order[dev_queries:]]

  # Negatives come from the training documents only, so no dev document is seen during training.
  titles, bodies = [d["title"] for d in train], [d["text"] for d in train]
  neighbours = bm25_neighbours(titles, bodies, negatives)
  final.parent.mkdir(parents=True, exist_ok=True)
  out = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
  try:
    summary = {"usable_docs": len(usable), "corpus_docs": len(docs),
               **_write(out, domain, instruction, train, dev, docs, bodies, neighbours, dev_docs, rng)}
    summary.update(corpus=str(corpus_file), domain=domain, instruction=instruction, negatives=negatives,
                   min_body_words=min_body_words, seed=seed)
    (out / "pairs.json").write_text(json.dumps(summary, indent=2) + "\n")
    out.chmod(0o755)
    out.rename(final)
  finally:
    shutil.rmtree(out, ignore_errors=True)
  return summary


def _write(out, domain, instruction, train, dev, docs, bodies, neighbours, dev_docs, rng) -> dict:
  (out / "train").mkdir(parents=True)
  with open(out / "train" / f"{domain}-formatted.jsonl", "w", encoding="utf-8") as f:
    for i, doc in enumerate(train):
      record = {"prompt": instruction, "query": doc["title"], "pos": [doc["text"]],
                "neg": [bodies[j] for j in neighbours[i]], "source_id": str(doc["_id"])}
      f.write(json.dumps(record, ensure_ascii=False) + "\n")

  dev_ids = {str(d["_id"]) for d in dev}
  others = [d for d in docs if str(d["_id"]) not in dev_ids]
  fill = [others[i] for i in sorted(rng.choice(len(others), max(dev_docs - len(dev), 0), replace=False))]
  # Dev documents are bodies without their titles, as the training positives are: a title is the query.
  write_beir(out / "dev", corpus=[{"_id": d["_id"], "text": d["text"]} for d in dev + fill],
             queries={str(d["_id"]): d["title"] for d in dev}, qrels={str(d["_id"]): {str(d["_id"]): 1} for d in dev},
             split="dev")
  return {"train_records": len(train), "dev_queries": len(dev), "dev_docs": len(dev) + len(fill)}


def write_beir(directory: pathlib.Path, *, corpus: Sequence[dict], queries: dict[str, str],
               qrels: dict[str, dict[str, int]], split: str) -> None:
  """A BEIR directory: corpus.jsonl, queries.jsonl, qrels/{split}.tsv (the layout `rejax eval --dataset` reads)."""
  (directory / "qrels").mkdir(parents=True, exist_ok=True)
  with open(directory / "corpus.jsonl", "w", encoding="utf-8") as f:
    for d in corpus:
      row = {"_id": str(d["_id"]), "title": d.get("title") or "", "text": d["text"]}
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  with open(directory / "queries.jsonl", "w", encoding="utf-8") as f:
    for qid, text in queries.items():
      f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
  with open(directory / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
    f.write("query-id\tcorpus-id\tscore\n")
    for qid, judged in qrels.items():
      for did, grade in judged.items():
        f.write(f"{qid}\t{did}\t{grade}\n")


