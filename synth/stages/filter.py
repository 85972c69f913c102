"""filter (optional): the LLM answers Yes/No whether each candidate source belongs to the domain.

Reads the domain corpus (sources chosen by synth.sources.select_sources); writes
`filter/DOMAIN.jsonl` rows `{"doc_id"}` for the sources answered Yes.
"""

from __future__ import annotations

from synth.context import Context
from synth.prompts import filter_messages
from synth.summary import StageSummary
from synth.textproc import parse_yes_no

NAME = "filter"


def run(ctx: Context, domain: str) -> StageSummary | None:
  """The filter's summary for one domain (in: corpus documents; out: sources kept)."""
  corpus, spec = ctx.corpus(domain), ctx.domains[domain]
  ids, not_sources = ctx.sources(domain)

  def process(batch):
    requests = [filter_messages(spec, corpus[item["doc_id"]]) for item in batch]
    answers = ctx.chat(ctx.config.filter.backend, requests, ctx.sampling(NAME, domain, batch[0]["doc_id"]))
    rows = []
    for item, answer in zip(batch, answers):
      verdict = parse_yes_no(answer) if answer is not None else None
      row = {"doc_id": item["doc_id"]}
      if verdict is None:
        row["drop"] = "filter answer is not Yes/No" if answer is not None else "backend returned nothing"
      elif not verdict:
        row["drop"] = "not in the domain (answered No)"
      rows.append(row)
    return rows

  done = ctx.run_units(NAME, domain, [{"doc_id": i} for i in ids], ids, process)
  return None if done is None else ctx.keep(NAME, domain, done[0], len(corpus), not_sources, done[1])
