"""`rejax data mine`: hard negatives for each query, mined from a corpus with a model (docs/architecture.md).

    inputs (records or BEIR queries + qrels; corpus.jsonl)        mine_inputs.py, checked before any model loads
      -> each query's top --range-max documents, its positives and their duplicates left out: the faiss search of
         `rejax eval` over the cached corpus embeddings (rejax.eval.search, rejax.eval.cache), or BM25
      -> optionally rescored with a CrossEncoder (the window's candidates and the positives)
      -> the window, margins and max score (window.candidate_mask), then the top or a seeded random few (choose)
      -> the records with these negatives (and, with --include-scores, pos_scores / neg_scores), under the input's
         file names (`{domain}-formatted.jsonl` for BEIR input), and mine.json: the settings and counts
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys

import numpy as np
from tqdm.auto import tqdm

from rejax.errors import InputError
from rejax.teacher.mine_inputs import Corpus, MiningQuery, from_beir, from_records, is_beir_dir, read_corpus
from rejax.teacher.record_files import check_new_output, write_records_dir
from rejax.teacher.scorers import BM25, Bm25, load_scorer, resolve
from rejax.teacher.window import SAMPLING, candidate_mask, choose_all

SUMMARY = "mine.json"


@dataclasses.dataclass(frozen=True)
class MineSettings:
  """Which candidates may be negatives and how many are taken (window.py says how each is applied)."""

  range_min: int = 0
  range_max: int = 100
  negatives: int = 10
  sampling: str = "top"
  absolute_margin: float | None = None
  relative_margin: float | None = None
  max_score: float | None = None
  seed: int = 0
  include_scores: bool = False

  def check(self, num_docs: int) -> None:
    """Raises InputError naming the flag when a setting leaves every window empty or makes no sense."""
    if self.range_min < 0:
      raise InputError(f"--range-min {self.range_min}: must be >= 0")
    if self.range_min >= self.range_max:
      raise InputError(f"--range-min {self.range_min} is not below --range-max {self.range_max}: the window of "
                       "ranks [range-min, range-max) is empty")
    if self.range_min >= num_docs:
      raise InputError(f"--range-min {self.range_min}: the corpus has {num_docs} documents; every window is empty")
    if self.negatives > self.range_max - self.range_min:
      raise InputError(f"--negatives {self.negatives}: the window [--range-min {self.range_min}, --range-max "
                       f"{self.range_max}) holds only {self.range_max - self.range_min} candidates")
    if self.sampling not in SAMPLING:
      raise InputError(f"--sampling {self.sampling!r}: expected one of {', '.join(SAMPLING)}")
    for flag, value in (("--absolute-margin", self.absolute_margin), ("--relative-margin", self.relative_margin),
                        ("--max-score", self.max_score)):
      if value is not None and not math.isfinite(value):
        raise InputError(f"{flag} {value}: must be a finite number")
    if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
      raise InputError(f"--relative-margin {self.relative_margin}: must be in [0, 1)")


@dataclasses.dataclass
class Candidates:
  """Each query's ranked candidates: scores [Q, K] (-inf past its hits), their corpus rows [Q, K] (-1 there), and
  the score of each of its positives."""

  scores_qk: np.ndarray
  rows_qk: np.ndarray
  positive_scores: list[np.ndarray]


def _queries_texts(queries: list[MiningQuery]) -> tuple[list[str], list[str]]:
  return [q.record["query"] for q in queries], [q.record["prompt"] for q in queries]


def dense_candidates(scorer, corpus: Corpus, queries: list[MiningQuery], k: int, *,
                     cache_dir: pathlib.Path | None = None, progress: bool = True) -> Candidates:
  """The top `k` of each query by a bi-encoder: `rejax eval`'s cached corpus embeddings and exact faiss search,
  the query's excluded rows left out before the cut."""
  from rejax.eval.cache import cache_key, cached
  from rejax.eval.search import build_index, search

  doc_nd = cached(cache_dir, cache_key(scorer.model_dir, corpus.texts, **scorer.cache_settings),
                  lambda: scorer.encode_documents(corpus.texts, progress=progress), "mine corpus")
  texts, instructions = _queries_texts(queries)
  q_qd = scorer.encode_queries(texts, instructions, progress=progress)
  rows = [str(i) for i in range(len(corpus.ids))]  # faiss ids are corpus rows
  names = [str(i) for i in range(len(queries))]
  excluded = {n: {str(r) for r in q.excluded_rows} for n, q in zip(names, queries)}
  run = search(build_index(doc_nd, "flat"), rows, q_qd, names, k, excluded)
  scores_qk, rows_qk = np.full((len(queries), k), -np.inf), np.full((len(queries), k), -1, dtype=np.int64)
  for i, name in enumerate(names):
    hits = run[name]
    rows_qk[i, : len(hits)] = [int(r) for r in hits]
    scores_qk[i, : len(hits)] = list(hits.values())
  positives = [doc_nd[q.positive_rows].astype(np.float64) @ q_qd[i].astype(np.float64) for i, q in enumerate(queries)]
  return Candidates(scores_qk, rows_qk, positives)


def bm25_candidates(corpus: Corpus, queries: list[MiningQuery], k: int, *, progress: bool = True) -> Candidates:
  """The top `k` of each query by BM25 (every document scored, the excluded rows left out before the cut)."""
  bm25 = Bm25(corpus.texts)
  scores_qk, rows_qk = np.full((len(queries), k), -np.inf), np.full((len(queries), k), -1, dtype=np.int64)
  positives = []
  for i, q in enumerate(tqdm(queries, desc="bm25 search", unit="query", disable=not progress)):
    scores = bm25.query_scores(q.record["query"])
    positives.append(scores[q.positive_rows])
    scores[list(q.excluded_rows)] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    top = top[np.isfinite(scores[top])]
    rows_qk[i, : len(top)], scores_qk[i, : len(top)] = top, scores[top]
  return Candidates(scores_qk, rows_qk, positives)


def rescore(cross_encoder, corpus: Corpus, queries: list[MiningQuery], found: Candidates, range_min: int, *,
            progress: bool = True) -> Candidates:
  """The candidates of the window [range_min, K) and the positives scored again by a CrossEncoder (in one batch);
  the ranks stay the search's."""
  where = np.argwhere(found.rows_qk[:, range_min:] >= 0)
  q_of, col = where[:, 0], where[:, 1] + range_min
  pairs_q = [queries[i].record["query"] for i in q_of] + [q.record["query"] for q in queries for _ in q.positive_rows]
  pairs_d = [corpus.texts[r] for r in found.rows_qk[q_of, col]] + [corpus.texts[r] for q in queries
                                                                     for r in q.positive_rows]
  scores = cross_encoder.score_pairs(pairs_q, [None] * len(pairs_q), pairs_d, progress=progress)
  scores_qk = np.full_like(found.scores_qk, -np.inf)
  scores_qk[q_of, col] = scores[: len(q_of)]
  split = np.cumsum([len(q.positive_rows) for q in queries])[:-1]
  return Candidates(scores_qk, found.rows_qk, np.split(scores[len(q_of) :], split))


def select(found: Candidates, settings: MineSettings) -> tuple[np.ndarray, list[np.ndarray]]:
  """(bool [Q, K] the candidates that may be negatives, each query's chosen columns best first): the window and
  margins against the query's lowest positive score, then the top or a seeded random draw."""
  pos_q = np.array([s.min() for s in found.positive_scores])
  keep_qk = candidate_mask(found.scores_qk, pos_q, range_min=settings.range_min,
                           absolute_margin=settings.absolute_margin, relative_margin=settings.relative_margin,
                           max_score=settings.max_score)
  return keep_qk, choose_all(found.scores_qk, keep_qk, settings.negatives, settings.sampling, settings.seed)


def mine(model: str, corpus_path: pathlib.Path, input_path: pathlib.Path, output: pathlib.Path,
         settings: MineSettings, *, cross_encoder: str | None = None, titles: bool = True, split: str = "train",
         instruction: str | None = None, domain: str | None = None, dtype: str = "float32", max_length: int = 512,
         batch_size: int = 32, cache_dir: pathlib.Path | None = None, progress: bool = True) -> dict:
  """Writes the mined records and mine.json to the new directory `output`; returns mine.json's content."""
  check_new_output(output)
  corpus = read_corpus(corpus_path, titles=titles)
  settings.check(len(corpus.ids))
  if is_beir_dir(input_path):
    if instruction is None:
      from rejax.data.weak_pairs import GENERIC_INSTRUCTION

      instruction = GENERIC_INSTRUCTION
    files = from_beir(input_path, corpus, split=split, instruction=instruction, domain=domain)
  else:
    if instruction is not None or domain is not None:
      raise InputError(f"--input {input_path}: records carry their own instruction (`prompt`) and domain (the file "
                       "name); --instruction and --domain are for a BEIR directory")
    files = from_records(input_path, corpus)
  queries = [q for qs in files.values() for q in qs]
  print(f"mining {settings.negatives} negatives for {len(queries)} queries over {len(corpus.ids)} documents",
        file=sys.stderr)

  kind, model_dir = resolve(model, "--model")
  if kind == "cross-encoder":
    raise InputError(f"--model {model}: a CrossEncoder scores pairs and cannot search a corpus; give it as "
                     "--cross-encoder beside a bi-encoder or bm25")
  if cross_encoder is not None:
    ce_kind, ce_dir = resolve(cross_encoder, "--cross-encoder")
    if ce_kind != "cross-encoder":
      raise InputError(f"--cross-encoder {cross_encoder}: a {ce_kind} model, not a sentence-transformers CrossEncoder")
  k = settings.range_max
  if kind == BM25:
    found = bm25_candidates(corpus, queries, k, progress=progress)
  else:
    scorer = load_scorer(kind, model_dir, dtype=dtype, max_length=max_length, batch_size=batch_size)
    found = dense_candidates(scorer, corpus, queries, k, cache_dir=cache_dir, progress=progress)
  if cross_encoder is not None:
    reranker = load_scorer("cross-encoder", ce_dir, max_length=max_length, batch_size=batch_size)
    found = rescore(reranker, corpus, queries, found, settings.range_min, progress=progress)

  keep_qk, chosen = select(found, settings)
  out_files, number = {}, 0
  written = short = 0
  for name, qs in files.items():
    out_files[name] = []
    for q in qs:
      cols = chosen[number]
      record = mined_record(q, corpus, found.rows_qk[number, cols], found.scores_qk[number, cols],
                            found.positive_scores[number], settings.include_scores)
      number += 1
      if record is None:
        continue
      out_files[name].append(record)
      written += 1
      short += len(cols) < settings.negatives
  out_files = {name: records for name, records in out_files.items() if records}
  window = np.isfinite(found.scores_qk[:, settings.range_min :]).sum()
  summary = {"model": model, "cross_encoder": cross_encoder, "corpus": str(corpus_path), "input": str(input_path),
             "titles": titles, **dataclasses.asdict(settings), "queries": len(queries), "records": written,
             "dropped_without_negative": len(queries) - written, "short_of_negatives": short,
             "window_candidates": int(window), "filtered_out": int(window - keep_qk.sum()),
             "files": {name: len(records) for name, records in out_files.items()}}
  if not written:
    raise InputError(f"no query has a candidate left after the margins and --max-score; nothing written to {output}")
  write_records_dir(output, out_files, summary, SUMMARY, what="mined records")
  return summary


def mined_record(query: MiningQuery, corpus: Corpus, rows, scores, positive_scores, include_scores: bool):
  """The query's record with `neg` the mined documents (None when there is none), scores set or dropped."""
  if not len(rows):
    return None
  record = {k: v for k, v in query.record.items() if k not in ("pos_scores", "neg_scores")}
  record["neg"] = [corpus.texts[r] for r in rows]
  if include_scores:
    record["pos_scores"] = [float(s) for s in positive_scores]
    record["neg_scores"] = [float(s) for s in scores]
  return record
