"""The keys every synthesis config has, with the paper's settings where the paper gives them
(docs/method.md#data-synthesis)."""

from __future__ import annotations

import ml_collections

# docs/method.md#data-synthesis: target query length (words) and education level, with sampling weights.
LENGTHS = (("fewer than 100 words", 1), ("100 to 200 words", 2), ("200 to 300 words", 3),
           ("300 to 400 words", 3), ("400 to 500 words", 2), ("at least 500 words", 1))
LEVELS = (("high school", 1), ("college", 2), ("PhD", 2))


def sampling(temperature: float, top_p: float, max_tokens: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(temperature=temperature, top_p=top_p, max_tokens=max_tokens))


def domain(corpus: str, gold: tuple[str, ...] = (), **fields) -> ml_collections.ConfigDict:
  """A domain block: corpus JSONL, gold-id files, optional BRIGHT `preset`, fields that override it."""
  block = dict(corpus=corpus, gold=tuple(gold), preset="", topic="", instruction="", query_kind="", relevance="",
               group_size=0, batch_size=0, max_documents=0)
  block.update(fields)
  return ml_collections.ConfigDict(block)


def base_config() -> ml_collections.ConfigDict:
  """Every key a synthesis config has, with the paper's settings where it gives them."""
  c = ml_collections.ConfigDict()
  c.workdir = ""
  c.seed = 42
  c.engine = "local"  # or "ray": the LLM stages through Ray Data LLM processors, mining's embedder on Ray actors
  # The ray engine: cluster address ("" starts a local instance); processor replicas per backend name (vLLM /
  # SGLang engine replicas, or HTTP actors per server; default 1); rows per Ray batch; mining's embedder actors.
  c.ray = ml_collections.ConfigDict(dict(address="", replicas=ml_collections.ConfigDict(), batch_size=16,
                                         embed_replicas=1, embed_gpus=0.0))
  c.backends = ml_collections.ConfigDict()
  c.embedder = ml_collections.ConfigDict()
  c.domains = ml_collections.ConfigDict()
  c.sources = ml_collections.ConfigDict(dict(min_chars=200, max_chars=5000, max_per_domain=10_000))
  c.filter = ml_collections.ConfigDict(dict(enabled=False, backend="generator", unit_size=1024,
                                            sampling=sampling(0.0, 1.0, 4)))
  c.generate = ml_collections.ConfigDict(dict(backend="generator", unit_size=256, lengths=LENGTHS, levels=LEVELS,
                                              response_prefix="", sampling=sampling(1.0, 0.6, 2048)))
  c.mine = ml_collections.ConfigDict(dict(top_k=1000, keep=100, unit_size=512))
  c.annotate = ml_collections.ConfigDict(dict(backend="annotator", unit_size=2048, score_completion=False,
                                              sampling=sampling(0.7, 0.95, 4096)))
  c.reason = ml_collections.ConfigDict(dict(enabled=True, backend="generator", unit_size=256,
                                            sampling=sampling(0.7, 0.95, 1024)))
  c.format = ml_collections.ConfigDict(dict(pos_min_score=3, neg_max_score=2))
  return c
