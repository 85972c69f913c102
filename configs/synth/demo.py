"""ReMixer on one CPU: SmolLM2-135M-Instruct over the first 400 CACM documents (a small real corpus).

COMMAND (from the repository root; a few minutes on 2 CPU cores):

    synth run --config configs/synth/demo.py

SmolLM2-135M-Instruct (from rejax.assets, no hub access) writes the queries, judges relevance and writes
the reasoning queries with the transformers backend; rejax's Encoder on the same model mines candidates.
Output: runs/synth/demo/format/cacm-formatted.jsonl and the ArrayRecord dataset runs/synth/demo/arrayrecord/
(`rejax train ... --config.data.path=runs/synth/demo/arrayrecord`). A 135M model is a weak annotator: it
reasons but rarely closes with a score tag, so `annotate.score_completion` lets it complete an open
`<score>` after its analysis, and its answers start from `generate.response_prefix`. Expect a handful of
records, of demo quality.
"""

from synth.defaults import base_config, domain, sampling


def get_config(arg: str = ""):
  del arg
  c = base_config()
  c.workdir = "runs/synth/demo"
  smollm2 = dict(kind="transformers", model="asset:smollm2", device="cpu", dtype="float32", batch_size=8)
  c.backends.generator = smollm2
  c.backends.annotator = smollm2  # the same settings: the context builds each backend name once
  c.embedder = dict(kind="rejax", model="asset:smollm2", dtype="float32", max_length=256, batch_size=16)
  c.domains.cacm = domain(
    "sample_data/cacm/corpus.jsonl", gold=("sample_data/cacm/qrels/test.tsv",), max_documents=400,
    topic="computer science research (Communications of the ACM, 1958-1979)",
    instruction="Given a computer science question, retrieve abstracts of papers that help answer it.",
    query_kind="a question a computer scientist might ask, about a problem they are working on, that the ideas "
               "in the document help answer",
    relevance="the paper's methods or results help a computer scientist answer the question",
    group_size=4, batch_size=2)
  c.sources.max_per_domain = 8
  c.generate.sampling = sampling(1.0, 0.6, 96)
  c.generate.response_prefix = "Question:"  # a 135M model otherwise often chats about the task
  c.mine.top_k = 100
  c.mine.keep = 8
  c.annotate.score_completion = True
  c.annotate.sampling = sampling(0.7, 0.95, 128)
  c.reason.sampling = sampling(0.7, 0.95, 128)
  c.generate.unit_size = c.annotate.unit_size = c.reason.unit_size = 16
  return c
