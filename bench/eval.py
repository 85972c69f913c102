"""Corpus encoding throughput of `rejax eval` (its Encoder) vs sentence-transformers, same model and docs, one run.

    python -m bench.eval [--docs 256] [--max-length 256] [--batch-size 32] [--dtype float32] [--repeats 1]

Both encode the first N documents of the CACM sample collection (sample_data/cacm) with SmolLM2-135M-Instruct
(rejax.assets, no hub) into L2-normalised last-token embeddings. The SentenceTransformer is built in code
over the same HF directory: Transformer (max_seq_length as ours) + Pooling("lasttoken") + Normalize, and is
fed each text with the tokenizer's EOS appended, as rejax tokenises it. Prints docs/s of both (the median of
`--repeats` timed passes after one warm-up pass, which also compiles), their ratio, and the cosine between
the two embeddings of each doc as a check that both computed the same thing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

import numpy as np

from bench import machine

REPO = pathlib.Path(__file__).resolve().parents[1]


def cacm_docs(n: int) -> list[str]:
  """The first n CACM documents, `title\\ntext` as `rejax eval` feeds them."""
  from rejax.data.text import format_document
  from rejax.rows import jsonl_rows

  docs = []
  for _, row in jsonl_rows(REPO / "sample_data" / "cacm" / "corpus.jsonl"):
    docs.append(format_document(row["text"], row.get("title")))
    if len(docs) == n:
      break
  return docs


def timed_passes(encode, repeats: int) -> tuple[float, float, np.ndarray]:
  """(first pass seconds, median seconds of the next `repeats`, embeddings) of `encode()`."""
  start = time.perf_counter()
  emb = encode()
  cold = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    encode()
    times.append(time.perf_counter() - start)
  return cold, statistics.median(times), np.asarray(emb, np.float32)


def sentence_transformer(model_dir: pathlib.Path, max_length: int, dtype: str):
  """A SentenceTransformer over the HF directory: last-token pooling and normalisation, built in code."""
  import torch
  from sentence_transformers import SentenceTransformer, models

  # Plain text only: with a chat template in the tokenizer, sentence-transformers would otherwise render each
  # text as a chat message, which is not what `rejax eval` embeds.
  transformer = models.Transformer(str(model_dir), max_seq_length=max_length,
                                   model_kwargs={"dtype": getattr(torch, dtype)},
                                   modality_config={"text": {"method": "forward",
                                                             "method_output_name": "last_hidden_state"}},
                                   module_output_name="token_embeddings")
  pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")
  return SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", help="HF model dir (default: SmolLM2-135M-Instruct via rejax.assets)")
  parser.add_argument("--docs", type=int, default=256)
  parser.add_argument("--max-length", type=int, default=256)
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args()

  import jax
  import torch

  from rejax import assets
  from rejax.eval.encode import Encoder
  from rejax.sharding import make_mesh, use_mesh

  model_dir = pathlib.Path(args.model or assets.fetch("smollm2", pathlib.Path(os.environ.get("REJAX_ASSETS",
                                                                                          ".cache/assets"))))
  docs = cacm_docs(args.docs)
  torch.set_num_threads(machine.usable_cores())

  # As `rejax eval` builds it: data parallel over every device.
  mesh = make_mesh(data=jax.device_count())
  with use_mesh(mesh):
    encoder = Encoder.from_pretrained(model_dir, dtype=args.dtype, max_length=args.max_length,
                                      batch_size=args.batch_size, mesh=mesh)
  rejax_cold, rejax_s, rejax_emb = timed_passes(lambda: encoder.encode(docs, progress=False), args.repeats)

  st = sentence_transformer(model_dir, args.max_length, args.dtype)
  st_docs = [d + st.tokenizer.eos_token for d in docs]
  with torch.inference_mode():
    st_cold, st_s, st_emb = timed_passes(
        lambda: st.encode(st_docs, batch_size=args.batch_size, convert_to_numpy=True), args.repeats)

  tokens = sum(len(ids) for ids in encoder.tokenizer(docs, truncation=True, max_length=args.max_length)["input_ids"])
  cosine = np.sum(rejax_emb * st_emb, axis=1)
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, torch threads {torch.get_num_threads()}; "
        f"{model_dir.name}, {len(docs)} CACM docs (~{tokens} tokens), max_length {args.max_length}, "
        f"batch {args.batch_size}, {args.dtype}")
  for name, cold, seconds in (("rejax Encoder (JAX)", rejax_cold, rejax_s),
                              ("sentence-transformers", st_cold, st_s)):
    print(f"{name:22s} {len(docs) / seconds:8.1f} docs/s  ({seconds:.2f} s per pass; first pass {cold:.2f} s)")
  print(f"ratio rejax / sentence-transformers: {st_s / rejax_s:.2f}x")
  print(f"cosine(rejax, sentence-transformers) per doc: min {cosine.min():.6f}, mean {cosine.mean():.6f}")


if __name__ == "__main__":
  main()
