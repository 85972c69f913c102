"""generate: one stand-alone query of the domain's kind per source document.

Each source draws a target length and an education level (weighted, a pure function of seed, domain
and source id). A non-empty `generate.response_prefix` (e.g. "Question:") starts the answer for the
model, which keeps small models from chatting about the task instead of writing the query. Answers are cleaned
(quotes, fences, labels), those that refer to their source are rejected, and repeated queries (by
normalised-text hash) are dropped. Writes `generate/DOMAIN.jsonl` rows
`{"qid", "source_id", "query", "length", "level"}`.
"""

from __future__ import annotations

import collections

from synth.config import stage_enabled
from synth.context import Context
from synth.prompts import generate_messages
from synth.sources import weighted_choice
from synth.summary import StageSummary
from synth.textproc import clean_query, content_hash, refers_to_source
from synth.units import read_jsonl

NAME = "generate"


def plan(ctx: Context, domain: str) -> tuple[list[dict], int, collections.Counter]:
  """(work items, input count, reasons for inputs that get no item): sources with their sampled settings."""
  block = ctx.config.generate
  if stage_enabled(ctx.config, "filter"):
    ids = [row["doc_id"] for row in read_jsonl(ctx.require("filter", domain))]
    n_in, not_sources = len(ids), collections.Counter()
  else:
    ids, not_sources = ctx.sources(domain)
    n_in = len(ctx.corpus(domain))
  items = [{"source_id": i,
            "length": weighted_choice(block.lengths, ctx.config.seed, domain, i, "length"),
            "level": weighted_choice(block.levels, ctx.config.seed, domain, i, "level")} for i in ids]
  return items, n_in, not_sources


def judge(answer: str | None) -> tuple[str, str | None]:
  """(cleaned query, drop reason or None) of one generator answer."""
  if answer is None:
    return "", "backend returned nothing"
  query = clean_query(answer)
  if not query:
    return query, "empty query"
  if refers_to_source(query):
    return query, "refers to its source (not stand-alone)"
  return query, None


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The generator's summary for one domain (in: corpus documents or filtered sources; out: unique queries)."""
  corpus, spec = ctx.corpus(domain), ctx.domains[domain]
  items, n_in, not_sources = plan(ctx, domain)
  block = ctx.config.generate

  def process(batch):
    prefix = [{"role": "assistant", "content": block.response_prefix}] if block.response_prefix else []
    requests = [generate_messages(spec, corpus[it["source_id"]], it["length"], it["level"]) + prefix for it in batch]
    answers = ctx.chat(block.backend, requests, ctx.sampling(NAME, domain, batch[0]["source_id"]))
    rows = []
    for item, answer in zip(batch, answers):
      query, drop = judge(answer)
      row = {"qid": f"{domain}/{item['source_id']}", **item, "query": query}
      rows.append({**row, "drop": drop} if drop else row)
    return rows

  done = ctx.run_units(NAME, domain, items, [it["source_id"] for it in items], process)
  if done is None:
    return None
  kept, dropped = done
  unique, seen = [], set()
  for row in kept:
    digest = content_hash(row["query"])
    if digest in seen:
      dropped["duplicate query"] += 1
    else:
      seen.add(digest)
      unique.append(row)
  return ctx.keep(NAME, domain, unique, n_in, not_sources, dropped)
