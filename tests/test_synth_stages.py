"""Stage logic of synth with a deterministic scripted backend and a hashing embedder (no model)."""

from __future__ import annotations

import collections
import json
import re

import pytest

from synth.backends.scripted import ScriptedBackend
from synth.context import Context
from synth.defaults import LENGTHS, LEVELS, base_config, domain
from synth.embedders import HashingEmbedder
from synth.pipeline import run_all, run_stage
from synth.sources import select_sources, weighted_choice
from synth.stages.mine import choose_candidates
from synth.summary import StageSummary
from synth.textproc import clean_query, parse_completed_score, parse_score, parse_yes_no, refers_to_source
from synth.units import read_jsonl

TOPICS = ["sorting", "parsing", "matrices", "compilers", "networks", "storage", "graphs", "queues", "hashing",
          "tapes", "languages", "numerics"]


def write_corpus(directory, n: int = 24) -> tuple:
  """(corpus path, gold qrels path) of a small corpus with one short, one long, one repeated and two gold docs."""
  directory.mkdir(parents=True, exist_ok=True)
  docs = []
  for i in range(n):
    topic = TOPICS[i % len(TOPICS)]
    body = " ".join(f"{topic} method {i} step {k} uses {TOPICS[(i + k) % len(TOPICS)]}" for k in range(8))
    docs.append({"_id": f"d{i}", "title": f"On {topic} {i}", "text": body})
  docs[7]["text"] += " REFER"  # the scripted generator answers this one with "the passage"
  docs[8]["text"] = docs[9]["text"] = docs[9]["text"] + " SAMEQ"  # distinct docs, the same query
  docs[8]["title"] = "On queues again"
  docs[10]["text"] += " GARBLED"  # the scripted annotator gives no score for this one
  docs += [{"_id": "short", "text": "too short"}, {"_id": "long", "text": "x " * 3000},
           {"_id": "copy", "title": docs[3]["title"], "text": docs[3]["text"]}]
  corpus = directory / "corpus.jsonl"
  corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
  gold = directory / "qrels.tsv"
  gold.write_text("query-id\tcorpus-id\tscore\nq1\td5\t1\nq1\td6\t1\nq2\td11\t0\n")
  return corpus, gold


def respond(messages, sampling):
  """The scripted LLM: recognises each stage's prompt and answers deterministically."""
  user = messages[0]["content"]
  if "Yes or No" in user:
    return "No." if "OFFTOPIC" in user else "Yes, it does."
  if "Requirements:" in user:
    doc = re.search(r"<document>\n(.*?)\n</document>", user, re.S).group(1)
    if "REFER" in doc:
      return "What does the passage say about this?"
    if "SAMEQ" in doc:
      return "How are queues organised?"
    title = doc.splitlines()[0]
    return f'"Query: Which technique from {title.lower()} would you use here?"'
  if "Relevance means" in user:
    doc = re.search(r"<document>\n(.*?)\n</document>", user, re.S).group(1)
    if "GARBLED" in doc:
      return "I am not sure."
    query = re.search(r"<query>\n(.*?)\n</query>", user, re.S).group(1)
    return f"The query asks ... the document offers ... <score>{1 + sum(map(ord, query + doc)) % 5}</score>"
  if "Before searching" in user:
    query = re.search(r"<query>\n(.*?)\n</query>", user, re.S).group(1)
    return f"The essential problem: {query} It needs knowledge of techniques."
  raise AssertionError(f"unexpected prompt: {user[:200]}")


def make_config(tmp_path, **overrides):
  """A locked synthesis config over the small corpus, with small units."""
  corpus, gold = write_corpus(tmp_path)
  c = base_config()
  c.workdir = str(tmp_path / "work")
  c.backends.generator = dict(kind="transformers", model="unused")  # replaced by scripted backends
  c.backends.annotator = dict(kind="transformers", model="unused")
  c.domains.cs = domain(str(corpus), gold=(str(gold),), topic="computing", instruction="Given a CS question, "
                        "retrieve helpful abstracts.", query_kind="a computing question", relevance="it helps",
                        group_size=4, batch_size=2)
  c.sources.max_per_domain = 100
  c.mine.top_k = 10
  c.mine.keep = 5
  for stage in ("filter", "generate", "annotate", "reason", "mine"):
    c[stage].unit_size = 4
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c


def make_context(config, responder=respond, **kwargs):
  backends = {"generator": ScriptedBackend(responder), "annotator": ScriptedBackend(responder)}
  return Context(config, backends=backends, embedder=HashingEmbedder(), progress=False, **kwargs)


def rows(ctx, stage, domain="cs"):
  return read_jsonl(ctx.path(stage, domain))


def test_weighted_choice_follows_the_paper_weights():
  for options in (LENGTHS, LEVELS):
    draws = collections.Counter(weighted_choice(options, 42, "biology", f"doc{i}") for i in range(20000))
    total = sum(w for _, w in options)
    for label, weight in options:
      assert abs(draws[label] / 20000 - weight / total) < 0.012, (label, draws)
  assert weighted_choice(LENGTHS, 42, "x", "d1") == weighted_choice(LENGTHS, 42, "x", "d1")
  assert weighted_choice((("a", 0), ("b", 1)), 0, "k") == "b"
  with pytest.raises(ValueError, match="positive sum"):
    weighted_choice((("a", 0),), 0)


def test_sources_exclude_gold_bounds_and_repeats(tmp_path):
  config = make_config(tmp_path)
  ctx = make_context(config)
  ids, dropped = ctx.sources("cs")
  assert {"d5", "d6"} & set(ids) == set()  # gold (grade > 0); d11 has grade 0 and stays
  assert "d11" in ids and "short" not in ids and "long" not in ids and "copy" not in ids
  assert dropped == {"test gold document": 2, "shorter than 200 chars": 1, "longer than 5000 chars": 1,
                     "duplicate source text": 1}
  corpus = ctx.corpus("cs")
  sampled, why = select_sources(corpus, set(), min_chars=200, max_chars=5000, max_sources=5, seed=42)
  again, _ = select_sources(corpus, set(), min_chars=200, max_chars=5000, max_sources=5, seed=42)
  assert sampled == again and len(sampled) == 5 and why["not sampled (over max_sources)"] == 19
  assert sampled == [d for d in corpus if d in set(sampled)]  # corpus order


def test_generate_cleans_rejects_dedups_and_samples_prompt_settings(tmp_path):
  ctx = make_context(make_config(tmp_path))
  assert run_stage(ctx, "generate")
  out = rows(ctx, "generate")
  summary = StageSummary.load(ctx.path("generate", "cs", ".summary.json"))
  assert summary.n_in == 27 and summary.n_out == len(out) == 20  # 22 sources - 1 reference - 1 repeat
  assert summary.dropped["refers to its source (not stand-alone)"] == 1
  assert summary.dropped["duplicate query"] == 1
  assert all(not q["query"].startswith(('"', "Query:")) for q in out)
  assert out[0]["query"] == "Which technique from on sorting 0 would you use here?"
  assert len({q["query"] for q in out}) == len(out)
  calls = ctx.backend("generator").calls
  first = next(m for m, _ in calls if "On sorting 0" in m[0]["content"])[0]["content"]
  assert f"Length: {out[0]['length']}." in first and f"a {out[0]['level']} education" in first
  assert "a computing question" in first and '"the passage"' in first
  assert all(s.temperature == 1.0 and s.top_p == 0.6 for _, s in calls)  # the paper's generation sampling


def test_filter_keeps_yes_and_counts_no(tmp_path):
  config = make_config(tmp_path, **{"filter.enabled": True})
  corpus_path = config.domains.cs.corpus
  lines = open(corpus_path).read().splitlines()
  lines[0] = lines[0].replace("method 0", "OFFTOPIC method 0")
  open(corpus_path, "w").write("\n".join(lines) + "\n")
  ctx = make_context(config)
  assert run_stage(ctx, "filter") and run_stage(ctx, "generate")
  assert "d0" not in {r["doc_id"] for r in rows(ctx, "filter")}
  assert StageSummary.load(ctx.path("filter", "cs", ".summary.json")).dropped["not in the domain (answered No)"] == 1
  assert StageSummary.load(ctx.path("generate", "cs", ".summary.json")).n_in == 21  # 22 sources, d0 answered No


def test_choose_candidates_skips_query_copies_pads_and_removes_the_source():
  corpus = {f"d{i}": f"text {i}" for i in range(10)}
  corpus["dq"] = "The Query"
  ranked = ["dq", "d3", "src", "d1"]
  corpus["src"] = "source text"
  got = choose_candidates(ranked, "the  query", "src", corpus, keep=3, seed=0)
  assert got == ["d3", "d1"]  # first 3 not equal to the query: d3, src, d1; then the source goes
  padded = choose_candidates(["d3"], "nothing", "src", corpus, keep=6, seed=0)
  assert padded[0] == "d3" and len(set(padded)) == len(padded) and "src" not in padded and "dq" in corpus
  assert len(padded) in (5, 6)  # 6 chosen; one fewer if the random padding drew the source
  assert padded == choose_candidates(["d3"], "nothing", "src", corpus, keep=6, seed=0)


def test_full_run_thresholds_and_records(tmp_path):
  ctx = make_context(make_config(tmp_path))
  assert run_all(ctx)
  queries = {q["qid"]: q for q in rows(ctx, "generate")}
  for m in rows(ctx, "mine"):
    assert queries[m["qid"]]["source_id"] not in m["candidates"] and len(m["candidates"]) >= 4
  annotated = rows(ctx, "annotate")
  summary = StageSummary.load(ctx.path("annotate", "cs", ".summary.json"))
  garbled = sum(1 for m in rows(ctx, "mine") for d in m["candidates"] if d == "d10")
  assert summary.dropped == {"no <score>1..5</score> in the answer": garbled} and garbled > 0
  assert all(1 <= a["score"] <= 5 for a in annotated)
  corpus = ctx.corpus("cs")
  records = read_jsonl(ctx.workdir / "format" / "cs-formatted.jsonl")
  fmt = StageSummary.load(ctx.path("format", "cs", ".summary.json"))
  assert fmt.n_out == len(records) > 0 and fmt.n_in == len(queries)
  by_query = collections.defaultdict(dict)  # query -> {doc id: score}, in candidate order
  for a in annotated:
    by_query[queries[a["qid"]]["query"]][a["doc_id"]] = a["score"]
  for record in records:
    scores = by_query[record["query"]]
    assert record["pos"] == [corpus[d] for d, s in scores.items() if s >= 3]
    assert record["neg"] == [corpus[d] for d, s in scores.items() if s <= 2]
    assert record["pos_scores"] == [float(s) for s in scores.values() if s >= 3]
    assert record["prompt"] == "Given a CS question, retrieve helpful abstracts."
    assert record["reasoning_query"] == f"The essential problem: {record['query']} It needs knowledge of techniques."
    assert (record["train_group_size"], record["batch_size"]) == (4, 2)
  lacking = sum(1 for q in queries.values() if not any(s >= 3 for s in by_query[q["query"]].values())
                or not any(s <= 2 for s in by_query[q["query"]].values()))
  assert sum(fmt.dropped.values()) == lacking


def test_score_completion_continues_an_open_score_tag(tmp_path):
  def forgetful(messages, sampling):
    if messages[-1]["role"] == "assistant":
      assert messages[-1]["content"].endswith("\n\n<score>") and sampling.max_tokens == 8
      return "4</score>"
    if "Relevance means" in messages[0]["content"]:
      return "The query needs X; the document offers X."
    return respond(messages, sampling)

  ctx = make_context(make_config(tmp_path, **{"annotate.score_completion": True}), forgetful)
  for stage in ("generate", "mine", "annotate"):
    assert run_stage(ctx, stage)
  annotated = rows(ctx, "annotate")
  assert annotated and all(a["score"] == 4 and a["completed"] for a in annotated)


def test_text_helpers():
  assert clean_query('```\nQuery: "How do heaps work?"\n```') == "How do heaps work?"
  assert clean_query("Here is the query:\nWhy is the sky blue?") == "Why is the sky blue?"
  assert clean_query("**Question:** Why?") == "Why?"
  assert refers_to_source("According to the passage, why?") and refers_to_source("In this document we...")
  assert not refers_to_source("Why does this algorithm terminate?")
  assert parse_score("a <score>2</score> then <score> 4 </score>") == 4
  assert parse_score("<score>7</score>") is None and parse_score("score: 3") is None
  assert parse_completed_score("3: because") == 3 and parse_completed_score(" 4\n</score>") == 4
  assert parse_completed_score("3.5</score>") is None and parse_completed_score("none") is None
  assert parse_yes_no("  Yes.") is True and parse_yes_no("no, it is not") is False and parse_yes_no("Maybe") is None


def test_response_prefix_starts_the_generators_answer(tmp_path):
  ctx = make_context(make_config(tmp_path, **{"generate.response_prefix": "Question:"}))
  assert run_stage(ctx, "generate")
  calls = [m for m, _ in ctx.backend("generator").calls]
  assert calls and all(m[-1] == {"role": "assistant", "content": "Question:"} for m in calls)
