"""SmolLM2-135M-Instruct made a retriever on 2 CPU cores: LoRA, InfoNCE + distillation, CACM titles -> abstracts.

COMMAND (what `make demo` runs, from the repository root):
  rejax data pairs --corpus sample_data/cacm/corpus.jsonl --output runs/demo/pairs
  rejax data score --teacher asset:all-minilm-l6-v2 --input runs/demo/pairs/train --output runs/demo/pairs/scored \
      --max-length 128
  rejax train --config configs/smollm2.py --workdir runs/demo
  rejax eval --model runs/demo/export --dataset sample_data/cacm --output runs/demo/cacm/trained.json \
      --max-length 128 --instruction "Given a search query, retrieve relevant documents that answer it."
  (`--config configs/smollm2.py:DIR` reads the scored records from DIR/scored and the dev set from DIR/dev instead
  of runs/demo/pairs)

Expected: the loss falls from ~23 to ln(16) + the KL term (~3.2) within 5 steps, stays there until ~step 25, then
falls below 1; dev nDCG@10 (100 held-out CACM titles -> bodies among 300 bodies) ~0.01 at step 20, ~0.87 at 40,
~0.93 at 60. `make demo` measures CACM's 52 judged queries with BM25 and all-MiniLM-L6-v2 beside it into
runs/demo/report.md; README.md ("Does it learn?") has the last run's table.

Why this data. The paper starts from a backbone already tuned on MS MARCO pairs; a 135M chat model is not an
embedder at all. The cheapest real supervision that needs no labels is a corpus's own structure: a paper's title
is a short query for its abstract. `rejax data pairs` builds those pairs from the CACM documents (1,487 records;
100 documents held out as the dev set), with BM25 neighbours of the title as hard negatives. No CACM query or
judgment is used, so CACM's 52 judged queries stay a held-out test (unsupervised adaptation to the target corpus,
as in title-abstract pretraining). all-MiniLM-L6-v2 scores each record's passages (`rejax data score`), and the
loss adds the KL divergence from its score distribution over each query's group (FlagEmbedding's distillation,
docs/method.md#distillation): the pairs say which passage is right, the teacher also says how wrong the negative
is. The BRIGHT posts in the repo are not used for training: they are BRIGHT's test queries. These pairs have no
reasoning queries, so the loss is InfoNCE (RI-InfoNCE needs them).

Why these settings (chosen on the dev set's nDCG@10, never on CACM's queries): 8 queries x G=2 (one BM25
negative, 15 in-batch), queries <= 32 tokens and passages <= 64, LoRA r=16 on every projection, lr 5e-4, tau 0.02,
distillation weight 1.0 at teacher temperature 0.05 (all-MiniLM-L6-v2 was trained at scale 20, i.e. tau 0.05),
60 steps, a dev evaluation every 20 and the best checkpoint exported. Dev nDCG@10 at steps 20/40/60 of 60-step
runs: this recipe 0.012/0.870/0.926; without distillation 0.039/0.776/0.854; without distillation and with mean
pooling 0.342/0.639/0.731.

The first steps' collapse, and why it is there. The untrained model's last-token (EOS) state carries no relevance
(`scripts/embedding_geometry.py`: dev nDCG@10 0.028, near chance: 0.015) but varies from text to text (query-document
cosines spread with std 0.12 around 0.74). At tau 0.02 that spread alone is worth an InfoNCE loss of ~10.8 over 16
candidates, and the first step's loss is 12.8 (22.7 with the KL term). Making every embedding the same cuts the
loss to ln(16) = 2.77 at once, so that is what the first steps do; relevance is then learnt from there (steps
25-35). A milder start does not avoid it: at tau 0.1 (noise alone: ~3.4) the loss starts at 4.3 and still parks at
ln(16) by step 5; lr 1e-4, Adam b2 0.95, random negatives and tau 0.05 did not shorten it either. Mean pooling
starts where relevance is (dev 0.048 as it is, 0.31 with the shared direction removed) and never collapses (0.342
at step 20), but learns more slowly after (0.731 at step 60): its queries average the instruction's ~20 tokens,
which causal attention makes the same for every query. So the demo keeps last-token pooling (the paper's) and its
~25 steps of collapse; distillation makes the steps after it count for more.
"""

from __future__ import annotations

import pathlib

import ml_collections

from rejax.data.weak_pairs import GENERIC_INSTRUCTION
from rejax.train.recipe import paper_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
INSTRUCTION = GENERIC_INSTRUCTION  # the training records' prompt, and the query instruction at evaluation
EVAL_MAX_LENGTH = 128  # tokens per text when evaluating (CACM documents: median 73, 90th percentile 223)
SUMMARY = ("SmolLM2-135M-Instruct, LoRA r=16, InfoNCE + KL distillation from all-MiniLM-L6-v2, 100 steps of 8 CACM "
           "titles x 2 passages")
TEACHER_MAX_LENGTH = 128  # tokens per text for the teacher's scores (all-MiniLM-L6-v2's own limit is 256)


def get_config(arg: str = ""):
  pairs = pathlib.Path(arg) if arg else ROOT / "runs" / "demo" / "pairs"
  c = paper_config()
  c.total_steps = 100
  c.ckpt_every = 25
  c.keep_checkpoints = 2
  c.seed = 0
  c.model.path = "asset:smollm2"
  c.model.dtype = "float32"  # bf16 is no faster on CPU
  c.model.remat = "none"  # activations of 8 x 32 + 16 x 64 tokens fit easily
  c.model.lora.rank = 16
  c.model.lora.alpha = 32.0
  c.model.lora.dropout = 0.0
  c.data.path = str(pairs / "scored")  # the train records with the teacher's pos_scores / neg_scores
  c.data.domains = ml_collections.ConfigDict({"cacm": (8, 2)})
  c.data.max_query_length = 32
  c.data.max_passage_length = 64
  c.data.min_bucket = 64  # one padded length per family: one compiled step
  c.data.pack = False  # packed rows vary in shape, and on 2 CPU cores each SmolLM2 compile costs 20-35 s
  c.data.num_workers = 0
  c.loss.kind = "infonce"
  c.loss.temperature = 0.02
  c.loss.temperature_warmup_steps = 20  # tau 1.0 -> 0.02 over the first 20 steps: shortens the collapse (below)
  c.loss.initial_temperature = 1.0
  c.loss.distill = "kl"
  c.loss.distill_weight = 1.0
  c.loss.distill_temperature = 0.05
  c.optim.lr = 5e-4
  c.optim.warmup_ratio = 0.1
  c.eval.dataset = str(pairs / "dev")
  c.eval.split = "dev"
  c.eval.every = 25
  c.eval.max_length = EVAL_MAX_LENGTH
  c.eval.instruction = INSTRUCTION
  c.eval.keep_best = True
  c.eval.export_best = True
  return c
