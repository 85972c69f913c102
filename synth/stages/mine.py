"""mine: hard-negative candidates for each query, searched WITHOUT its source (docs/method.md#data-synthesis).

Queries are embedded with the domain instruction, the whole domain corpus without; a flat inner-product
search (rejax.eval.search) gives the top `mine.top_k`; the first `mine.keep` whose text is not the
query's are kept, padded with random documents when short, and then the source document is removed.
Writes `mine/DOMAIN.jsonl` rows `{"qid", "candidates": [doc id, ...]}` (ranked order).
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from rejax.eval.cache import cached
from rejax.eval.search import build_index, search
from synth.context import Context
from synth.summary import StageSummary
from synth.textproc import normalise, stable_seed
from synth.units import read_jsonl

NAME = "mine"
EMBED_CHUNK = 1024  # corpus texts per embedding call (one progress step)


def choose_candidates(ranked: Sequence[str], query: str, source_id: str, corpus: Mapping[str, str], keep: int,
                      seed: int) -> list[str]:
  """The first `keep` ranked ids whose text differs from the query, padded with random corpus ids, minus the source."""
  same = normalise(query)
  chosen = [d for d in ranked if normalise(corpus[d]) != same][:keep]
  if len(chosen) < keep:
    taken = set(chosen)
    ids = list(corpus)
    for i in np.random.default_rng(seed).permutation(len(ids)):
      if len(chosen) == keep:
        break
      if ids[i] not in taken and normalise(corpus[ids[i]]) != same:
        chosen.append(ids[i])
        taken.add(ids[i])
  return [d for d in chosen if d != source_id]


def corpus_embeddings(ctx: Context, domain: str, doc_ids: list[str], texts: list[str]) -> np.ndarray:
  """[N, D] embeddings of the corpus, cached (rejax.eval.cache.cached) in `mine/DOMAIN.corpus-KEY.npy` (KEY: the
  embedder's name and the ids and texts; not rejax's cache_key, which fingerprints a local model directory)."""
  embedder = ctx.embedder()
  digest = hashlib.sha256(embedder.name.encode())
  for doc_id, text in zip(doc_ids, texts):
    digest.update(hashlib.sha256(f"{doc_id}\x1f{text}".encode()).digest())
  path = ctx.path(NAME, domain, f".corpus-{digest.hexdigest()[:16]}.npy")

  def embed() -> np.ndarray:
    steps = tqdm(range(0, len(texts), EMBED_CHUNK), desc=f"embed corpus {domain}", disable=not ctx.progress)
    return np.concatenate([embedder.embed(texts[start : start + EMBED_CHUNK]) for start in steps]).astype(np.float32)

  return cached(path.parent, path.stem, embed, what=f"[synth] {NAME} {domain}")


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The miner's summary for one domain (in: queries; out: queries with at least one candidate)."""
  block, spec, corpus = ctx.config.mine, ctx.domains[domain], ctx.corpus(domain)
  queries = read_jsonl(ctx.require("generate", domain))
  doc_ids = list(corpus)
  index = None

  def process(batch):
    nonlocal index
    if index is None:  # only a process with units to do embeds the corpus
      index = build_index(corpus_embeddings(ctx, domain, doc_ids, [corpus[d] for d in doc_ids]), "flat")
    q_emb = ctx.embedder().embed([q["query"] for q in batch], instruction=spec.instruction)
    hits = search(index, doc_ids, q_emb, [q["qid"] for q in batch], k=min(block.top_k, len(doc_ids)))
    rows = []
    for q in batch:
      candidates = choose_candidates(list(hits[q["qid"]]), q["query"], q["source_id"], corpus, block.keep,
                                     stable_seed(ctx.config.seed, NAME, q["qid"]))
      row = {"qid": q["qid"], "candidates": candidates}
      rows.append(row if candidates else {**row, "drop": "no candidate besides the source"})
    return rows

  done = ctx.run_units(NAME, domain, queries, [q["qid"] for q in queries], process)
  return None if done is None else ctx.keep(NAME, domain, done[0], len(queries), done[1])
