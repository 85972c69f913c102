"""`rejax` command line: one subcommand per job (see DESIGN.md section 4 for the contract)."""

from __future__ import annotations

import argparse
import pathlib
import sys


def cmd_encode(args: argparse.Namespace) -> None:
  from rejax.eval.rows import read_rows
  from rejax.eval.cache import save_npy_atomic

  texts = [record["text"] for record in read_rows(args.input, ("text",))]
  embeddings = _data_parallel_encoder(args).encode(texts, instruction=args.instruction)
  save_npy_atomic(args.output, embeddings)
  print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
  from rejax.eval.command import run_eval

  run_eval(args, make_encoder=_data_parallel_encoder)


def cmd_data_convert(args: argparse.Namespace) -> None:
  from rejax.data.convert import convert

  manifest = convert(args.input, args.output, skip_invalid=args.skip_invalid, num_shards=args.num_shards)
  counts = ", ".join(f"{d}: {info['records']}" for d, info in manifest["domains"].items())
  print(f"wrote {manifest['records']} records to {args.output} ({counts})", file=sys.stderr)


def cmd_data_pairs(args: argparse.Namespace) -> None:
  from rejax.data.weak_pairs import build_title_pairs

  for flag in ("dev_queries", "dev_docs", "negatives", "min_body_words"):
    if getattr(args, flag) < 1:
      raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
  domain = args.domain or args.corpus.parent.name
  summary = build_title_pairs(args.corpus, args.output, domain=domain, instruction=args.instruction,
                              dev_queries=args.dev_queries, dev_docs=args.dev_docs, negatives=args.negatives,
                              min_body_words=args.min_body_words, seed=args.seed)
  print(f"wrote {summary['train_records']} training records to {args.output}/train/{domain}-formatted.jsonl and a "
        f"dev set of {summary['dev_queries']} queries over {summary['dev_docs']} documents to {args.output}/dev "
        f"({summary['usable_docs']} of {summary['corpus_docs']} documents have a title and a body)", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> None:
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.loop import train

  config = apply_overrides(load_config_file(args.config), args.overrides)
  train(config, args.workdir, coordinator=args.coordinator, num_processes=args.num_processes,
        process_id=args.process_id)


def cmd_export(args: argparse.Namespace) -> None:
  from rejax.train.export_run import export_run

  export_run(args.workdir, args.output, step=args.step)


def _data_parallel_encoder(args):
  """An Encoder for args.model, data parallel over every device (parameters replicated); for a
  sentence-transformers baseline that is not a decoder (e.g. all-MiniLM-L6-v2), sentence-transformers itself."""
  import jax

  from rejax.eval.encode import Encoder
  from rejax.eval.st_encoder import SentenceTransformerEncoder, is_baseline_dir
  from rejax.hf.hub import resolve_model_dir
  from rejax.sharding import make_mesh, use_mesh

  if args.command == "eval" and is_baseline_dir(resolve_model_dir(args.model)):
    return SentenceTransformerEncoder(resolve_model_dir(args.model), max_length=args.max_length,
                                      batch_size=args.batch_size)

  mesh = make_mesh(data=jax.device_count())
  with use_mesh(mesh):
    return Encoder.from_pretrained(args.model, dtype=args.dtype, max_length=args.max_length,
                                   batch_size=args.batch_size, mesh=mesh)


def _step_arg(text: str) -> int | str:
  if text == "best":
    return text
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a step number or `best`, got {text!r}") from None


def _add_encoder_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--max-length", type=int, default=512, help="tokens per text, EOS included")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="parameter and compute dtype")


def build_parser() -> argparse.ArgumentParser:
  from rejax.eval.cache import default_cache_dir

  parser = argparse.ArgumentParser(prog="rejax", description="ReasonEmbed in JAX: train, evaluate, export.")
  commands = parser.add_subparsers(dest="command", required=True)

  encode = commands.add_parser("encode", help="embed the texts of a JSONL file into an .npy matrix")
  encode.add_argument("--model", required=True, help="Hugging Face model directory (Qwen3 or Llama) or hub id")
  encode.add_argument("--input", required=True, type=pathlib.Path, help='JSONL, one {"text": ...} per line')
  encode.add_argument("--output", required=True, type=pathlib.Path, help="output .npy, float32 [N, hidden]")
  encode.add_argument("--instruction", help="format each text as `Instruct: {instruction}\\nQuery: {text}`")
  _add_encoder_args(encode)
  encode.set_defaults(run=cmd_encode)

  evaluate = commands.add_parser("eval", help="retrieval metrics of a model (or bm25) on a BEIR dataset, BRIGHT "
                                               "or R2MED; or a report comparing the models evaluated in a directory")
  evaluate.add_argument("--model", help="HF model directory or hub id, or `bm25`")
  source = evaluate.add_mutually_exclusive_group(required=True)
  source.add_argument("--dataset", type=pathlib.Path, help="BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv")
  source.add_argument("--bright", help="BRIGHT: a directory in the layout of the hub's xlangai/BRIGHT "
                                       "(examples/, documents/), or that hub id when online")
  source.add_argument("--r2med", help="R2MED: a directory with one folder per task, or the hub org R2MED when online")
  source.add_argument("--report", type=pathlib.Path,
                      help="write DIR/table.md and DIR/chart.png comparing every RESULTS.json under DIR")
  evaluate.add_argument("--tasks", help="comma-separated benchmark tasks (default: all, in the paper's order)")
  evaluate.add_argument("--long-documents", action="store_true",
                        help="BRIGHT's long-document setting (long_documents, gold_ids_long)")
  evaluate.add_argument("--output", type=pathlib.Path,
                        help="RESULTS.json (required with --dataset; benchmarks default to "
                             "results/{bright,r2med}/MODEL/RESULTS.json, with RESULTS.md and runs/ beside it)")
  evaluate.add_argument("--split", default="test", help="--dataset's judgments: qrels/{split}.tsv (default: test)")
  evaluate.add_argument("--run-out", type=pathlib.Path, help="TREC run file: qid Q0 docid rank score tag")
  evaluate.add_argument("--instruction", help="query instruction (`Instruct: ...\\nQuery: ...`)")
  evaluate.add_argument("--top-k", type=int, default=1000)
  evaluate.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"],
                        help="faiss index: exact inner product (default) or approximate")
  evaluate.add_argument("--cache-dir", type=pathlib.Path, default=default_cache_dir(),
                        help="where corpus embeddings are cached (default: $REJAX_CACHE/embeddings or "
                             "~/.cache/rejax/embeddings)")
  _add_encoder_args(evaluate)
  evaluate.set_defaults(run=cmd_eval, max_length=None)  # None: the protocol's (BRIGHT 8192, R2MED and BEIR 512)
  train = commands.add_parser("train", help="train (or resume) a run: rejax train --config FILE.py[:ARG] --workdir DIR "
                                             "[--config.KEY=VALUE ...]")
  train.add_argument("--config", required=True, help="configs/NAME.py[:ARG], a file with get_config(arg)")
  train.add_argument("--workdir", required=True, type=pathlib.Path,
                     help="checkpoints, metrics.jsonl, tensorboard/, export/; the same DIR resumes")
  train.add_argument("--coordinator", help="host:port of process 0, for multi-process runs outside TPU pods / SLURM")
  train.add_argument("--num-processes", type=int)
  train.add_argument("--process-id", type=int)
  train.set_defaults(run=cmd_train)

  export = commands.add_parser("export", help="a run's checkpoint -> Hugging Face + sentence-transformers directory")
  export.add_argument("--workdir", required=True, type=pathlib.Path)
  export.add_argument("--step", type=_step_arg,
                      help="checkpoint step, or `best` (the kept best by eval.metric; default: the latest)")
  export.add_argument("--output", required=True, type=pathlib.Path)
  export.set_defaults(run=cmd_export)

  data = commands.add_parser("data", help="training data: convert released JSONL to ArrayRecord")
  data_commands = data.add_subparsers(dest="data_command", required=True)
  convert = data_commands.add_parser("convert", help="reason-embed-data JSONL -> TFDS/ArrayRecord dataset")
  convert.add_argument("--input", required=True, nargs="+",
                       help="files or globs of `{domain}-formatted.jsonl[.gz]` (quote globs)")
  convert.add_argument("--output", required=True, type=pathlib.Path, help="new dataset directory")
  convert.add_argument("--skip-invalid", action="store_true", help="skip and count malformed lines instead of stopping")
  convert.add_argument("--num-shards", type=int, help="ArrayRecord shards per domain (default: by size, 64 MiB-1 GiB)")
  convert.set_defaults(run=cmd_data_convert)

  from rejax.data.weak_pairs import GENERIC_INSTRUCTION

  pairs = data_commands.add_parser("pairs", help="weakly supervised training data from a corpus alone: each titled "
                                                 "document's title -> its body, BM25 hard negatives, a held-out dev set")
  pairs.add_argument("--corpus", required=True, type=pathlib.Path, help='BEIR corpus.jsonl ({"_id", "title", "text"})')
  pairs.add_argument("--output", required=True, type=pathlib.Path,
                     help="new directory: train/{domain}-formatted.jsonl, dev/ (BEIR, qrels/dev.tsv), pairs.json")
  pairs.add_argument("--domain", help="the training domain's name (default: the corpus's directory name)")
  pairs.add_argument("--instruction", default=GENERIC_INSTRUCTION, help="the query instruction of every record")
  pairs.add_argument("--dev-queries", type=int, default=100, help="documents held out as dev queries")
  pairs.add_argument("--dev-docs", type=int, default=500, help="documents in the dev corpus")
  pairs.add_argument("--negatives", type=int, default=10, help="BM25 hard negatives per record")
  pairs.add_argument("--min-body-words", type=int, default=20, help="a body needs a line of this many words")
  pairs.add_argument("--seed", type=int, default=0)
  pairs.set_defaults(run=cmd_data_pairs)
  return parser


def main(argv: list[str] | None = None) -> None:
  from rejax.train.config import ConfigError, split_overrides

  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    argv, overrides = split_overrides(argv)
  except ConfigError as e:
    sys.exit(f"rejax: error: {e}")
  args = build_parser().parse_args(argv)
  if overrides and args.command != "train":
    sys.exit(f"rejax {args.command}: error: --config.{overrides[0]}: only `rejax train` takes config overrides")
  args.overrides = overrides
  try:
    args.run(args)
  except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, FloatingPointError) as e:
    sys.exit(f"rejax {args.command}: error: {e}")


if __name__ == "__main__":
  main()
