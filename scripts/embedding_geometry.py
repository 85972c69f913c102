"""Where a model's embeddings start: how much they share, and how much relevance they already carry.

COMMAND (after `rejax data pairs`, as `make demo` runs it):
  .venv/bin/python scripts/embedding_geometry.py [--model asset:smollm2] [--dataset runs/demo/pairs/dev]
      [--split dev] [--pooling last_token mean] [--instruction "..."] [--max-length 128] [--temperature 0.02]

Per pooling, over the dataset's queries and documents:
- the mean cosine between documents, and the norm of the documents' mean embedding (1.0: all identical);
- the mean and the spread (standard deviation) of the query-document cosines;
- nDCG@10 of the embeddings as they are, and of the same embeddings minus their mean (queries and documents
  each centred on their own mean): how much relevance sits under the shared direction;
- the InfoNCE loss the spread alone would give at `--temperature` with 16 candidates, were the scores noise:
  the mean over draws of log-sum-exp of 16 scores minus one of them.

Why it exists: a chat model's last-token (EOS) state is nearly the same for every text and carries no relevance
(configs/smollm2.py has the figures); a recipe that starts there first collapses.
"""

from __future__ import annotations

import argparse

import numpy as np

from rejax.data.text import load_tokenizer
from rejax.data.weak_pairs import GENERIC_INSTRUCTION
from rejax.eval.beir import load_beir
from rejax.eval.encode import Encoder
from rejax.eval.metrics import evaluate
from rejax.eval.search import build_index, search
from rejax.hf.hub import resolve_model_dir
from rejax.hf.load import load_decoder

CANDIDATES = 16  # the demo's 8 queries x 2 passages: each query's positive among 16 passages


def ndcg_at_10(dataset, queries: np.ndarray, docs: np.ndarray) -> float:
  """nDCG@10 of exact inner-product search with these embeddings (renormalised)."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  run = search(build_index(unit(docs)), list(dataset.corpus), unit(queries), list(dataset.queries), 10)
  return evaluate(run, dataset.qrels)["ndcg@10"]


def noise_loss(spread: float, temperature: float, draws: int = 20_000, seed: int = 0) -> float:
  """E[logsumexp(s) - s_0] for CANDIDATES scores drawn i.i.d. N(0, (spread / temperature)^2)."""
  logits = np.random.default_rng(seed).normal(0.0, spread / temperature, (draws, CANDIDATES))
  top = logits.max(axis=1)
  return float(np.mean(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)) - logits[:, 0]))


def geometry(dataset, encoder: Encoder, instruction: str | None, temperature: float) -> dict[str, float]:
  docs = encoder.encode(list(dataset.corpus.values()), progress=False)
  queries = encoder.encode(list(dataset.queries.values()), instruction=instruction, progress=False)
  doc_doc = docs @ docs.T
  query_doc = queries @ docs.T
  return {
    "doc-doc cosine": float(doc_doc[np.triu_indices(len(docs), 1)].mean()),
    "norm of doc mean": float(np.linalg.norm(docs.mean(axis=0))),
    "query-doc cosine": float(query_doc.mean()),
    "query-doc spread": float(query_doc.std()),
    "nDCG@10": ndcg_at_10(dataset, queries, docs),
    "nDCG@10 centred": ndcg_at_10(dataset, queries - queries.mean(axis=0), docs - docs.mean(axis=0)),
    f"noise loss @ tau {temperature}": noise_loss(float(query_doc.std()), temperature),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="asset:smollm2")
  parser.add_argument("--dataset", default="runs/demo/pairs/dev")
  parser.add_argument("--split", default="dev")
  parser.add_argument("--pooling", nargs="+", default=["last_token", "mean"], choices=["last_token", "mean"])
  parser.add_argument("--instruction", default=GENERIC_INSTRUCTION, help='the queries\' instruction; "" = none')
  parser.add_argument("--max-length", type=int, default=128)
  parser.add_argument("--temperature", type=float, default=0.02)
  args = parser.parse_args()
  dataset = load_beir(args.dataset, args.split)
  model_dir = resolve_model_dir(args.model)
  tokenizer = load_tokenizer(model_dir)
  rows = {}
  for pooling in args.pooling:
    model, _ = load_decoder(model_dir, param_dtype="float32", dtype="float32", pooling=pooling)
    encoder = Encoder(model, tokenizer, max_length=args.max_length, model_dir=model_dir)
    rows[pooling] = geometry(dataset, encoder, args.instruction or None, args.temperature)
  names = list(next(iter(rows.values())))
  print("| pooling | " + " | ".join(names) + " |")
  print("|:---|" + "---:|" * len(names))
  for pooling, row in rows.items():
    print(f"| {pooling} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")


if __name__ == "__main__":
  main()
