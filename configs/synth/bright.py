"""ReMixer as in the paper: the 12 BRIGHT domains, Qwen2.5-72B-Instruct queries, a Qwen3-8B annotator,
gte-Qwen2-7B-instruct mining, on GPUs with vLLM (docs/method.md#data-synthesis).

COMMAND (ARG: a directory with the BRIGHT corpora and examples, see below):

    pip install -e '.[synth,vllm]'
    synth run --config configs/synth/bright.py:/data/bright
    # or over 4 machines, each:  synth run --config configs/synth/bright.py:/data/bright --shard I/4
    # or on a Ray cluster (README "Synthesis on a Ray cluster"), from the head node:
    #   synth run --config configs/synth/bright.py:/data/bright --engine ray --config.ray.address=auto
    # or stage by stage (one big model per process):  synth generate ...; synth mine ...; synth annotate ...

Layout of ARG: `documents/DOMAIN.jsonl` (BRIGHT's short-document "documents" rows: `id`, `content`) and
`examples/DOMAIN.jsonl.gz` (BRIGHT's "examples" rows; their `gold_ids` are never sources).
Expected output: about 81K records (the released reason-embed-data has 81,659) in
runs/synth/bright/format/DOMAIN-formatted.jsonl and runs/synth/bright/arrayrecord/.

Not published, our choices: the annotator is Qwen3-8B itself (the paper's is a Qwen3-8B distilled from
a larger reasoning model), the reason stage's model and sampling, and the tensor-parallel sizes
(72B in bf16 over 4 x 80 GB GPUs). To send requests to running vLLM / SGLang servers instead, replace
a backend block: `--config.backends.generator="{'kind': 'openai', 'base_url': 'http://HOST:8000/v1',
'model': 'Qwen/Qwen2.5-72B-Instruct', 'concurrency': 64}"` (API key, if any, in $OPENAI_API_KEY).
"""

from synth.defaults import base_config, domain
from synth.domains import BRIGHT


def get_config(arg: str = "data/bright"):
  root = arg or "data/bright"
  c = base_config()
  c.workdir = "runs/synth/bright"
  c.backends.generator = dict(kind="vllm", model="Qwen/Qwen2.5-72B-Instruct",
                              engine_args=dict(tensor_parallel_size=4, max_model_len=16384,
                                               gpu_memory_utilization=0.9))
  c.backends.annotator = dict(kind="vllm", model="Qwen/Qwen3-8B",
                              engine_args=dict(tensor_parallel_size=1, max_model_len=16384,
                                               gpu_memory_utilization=0.9))
  # engine="ray": 4 replicas of the 72B generator (4 GPUs each) and 16 of the 8B annotator (1 GPU each), so 16
  # GPUs are busy in every LLM stage; 8 copies of the 7B embedder for mining. The vLLM blocks above are the
  # replicas' engine_args. Paper-scale GPU-hours: README "Synthesis on a Ray cluster".
  c.ray.replicas = dict(generator=4, annotator=16)
  c.ray.batch_size = 64
  c.ray.embed_replicas = 8
  c.ray.embed_gpus = 1.0
  c.embedder = dict(kind="sentence-transformers", model="Alibaba-NLP/gte-Qwen2-7B-instruct", dtype="bfloat16",
                    max_length=1024, batch_size=32)
  for name in BRIGHT:
    c.domains[name] = domain(f"{root}/documents/{name}.jsonl", gold=(f"{root}/examples/{name}.jsonl.gz",))
  return c
