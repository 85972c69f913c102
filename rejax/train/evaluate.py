"""The dev evaluation of a run (`config.eval.*`): a BEIR-layout directory scored with the parameters of the
moment, inside the training process, as `rejax eval --dataset` would score that step's export.

The dataset is read and tokenised once. Each evaluation encodes corpus and queries with the train state's
weights (no dropout), searches exactly (faiss flat inner product, top 1000 like `rejax eval`) and scores
with rejax.eval.metrics. The forward is rejax.eval.encode.Encoder's own jitted function, built over an
abstract copy of the model: it compiles once per text-length bucket and never touches the train step's
compiled executables.

Multi-process: every process holds all texts and builds the same global batches (rows over every device of
the training mesh); the embeddings come back replicated, so every process ranks and scores the same
figures, and the best checkpoint is decided alike everywhere.
"""

from __future__ import annotations

import time

import ml_collections
from flax import nnx
from jax.sharding import Mesh

from rejax.eval.beir import load_beir
from rejax.eval.encode import Encoder
from rejax.eval.metrics import evaluate
from rejax.eval.search import build_index, search
from rejax.staging import staged
from rejax.storage import as_path
from rejax.train.logger import RunLogger
from rejax.train.state import TrainState

TOP_K = 1000  # the depth `rejax eval` ranks to by default (--top-k), so recall@100 and map agree with it


def is_due(step: int, eval_cfg: ml_collections.ConfigDict, total_steps: int) -> bool:
  """Returns whether the dev evaluation runs after update `step`: every `eval.every` steps and after the last."""
  return eval_cfg.every > 0 and (step % eval_cfg.every == 0 or step == total_steps)


class DevEval:
  """The dev set of a run, tokenised, and the encoder that scores a train state on it."""

  def __init__(self, eval_cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, state: TrainState, tokenizer,
               mesh: Mesh, logger: RunLogger):
    self.dataset = load_beir(staged(as_path(eval_cfg.dataset, "eval.dataset"), "eval.dataset"), eval_cfg.split)
    self.dataset.instruction = eval_cfg.instruction or None
    self.logger = logger
    # Abstract: the encoder keeps no weights of its own (those of the state it is given are donated each step).
    model = nnx.eval_shape(lambda: nnx.merge(graphdef, state.trainable, state.frozen))
    self.encoder = Encoder(model, tokenizer, max_length=eval_cfg.max_length, batch_size=eval_cfg.batch_size,
                           mesh=mesh)
    self.doc_ids, self.query_ids = list(self.dataset.corpus), list(self.dataset.queries)
    self.doc_tokens = self.encoder.tokenize([self.dataset.corpus[d] for d in self.doc_ids])
    self.query_tokens = self.encoder.tokenize([self.dataset.queries[q] for q in self.query_ids],
                                              instruction=self.dataset.instruction)
    logger.info(f"dev evaluation on {eval_cfg.dataset} ({eval_cfg.split}): {len(self.doc_ids)} documents, "
                f"{len(self.query_ids)} queries, every {eval_cfg.every} steps")

  def __call__(self, state: TrainState, step: int) -> dict[str, float]:
    """Returns `eval/{metric}` for every metric rejax.eval.metrics averages, and `eval/seconds`; logs a line."""
    start = time.perf_counter()
    weights = (state.trainable, state.frozen)
    doc_emb = self.encoder.encode_tokens(self.doc_tokens, weights=weights, progress=False)
    query_emb = self.encoder.encode_tokens(self.query_tokens, weights=weights, progress=False)
    run = search(build_index(doc_emb, "flat"), self.doc_ids, query_emb, self.query_ids, TOP_K, self.dataset.excluded)
    scores = evaluate(run, self.dataset.qrels)
    figures = {f"eval/{name}": value for name, value in scores.items() if name not in ("per_query", "num_queries")}
    figures["eval/seconds"] = time.perf_counter() - start
    shown = "  ".join(f"{name} {scores[name]:.4f}" for name in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
    self.logger.info(f"eval at step {step}: {shown}  ({figures['eval/seconds']:.1f} s)")
    return figures
