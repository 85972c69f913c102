"""`rejax` command line: one subcommand per job (the contract: docs/architecture.md#commands)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

# The largest value any count flag takes: far above real use, and small enough for every array size and faiss.
MAX_FLAG_INT = 2**31 - 1


def _locate(args: argparse.Namespace, *, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> None:
  """Turns the path flags of `args` into paths (rejax.storage): each output a local path or a gs:// URL whose bucket
  answers; each input a local path, or a gs:// one staged on this host first (rejax.staging, which checks its
  bucket). Before any work."""
  from rejax.staging import staged
  from rejax.storage import as_path, check_store

  for name in outputs + inputs:
    value = getattr(args, name)
    if value is None:
      continue
    flag = "--" + name.replace("_", "-")
    path = as_path(value, flag)
    if name in inputs:
      path = staged(path, flag)
    else:
      check_store(path, flag)
    setattr(args, name, path)


def cmd_encode(args: argparse.Namespace) -> None:
  from rejax.eval.cache import save_npy_atomic
  from rejax.rows import check_output_file, read_rows

  _locate(args, inputs=("input",), outputs=("output",))
  check_output_file(args.output, "--output")
  texts = [record["text"] for record in read_rows(args.input, {"text": str}, allow_empty=False)]
  embeddings = _data_parallel_encoder(args).encode(texts, instruction=args.instruction)
  save_npy_atomic(args.output, embeddings)
  print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
  from rejax.eval.command import run_eval

  _locate(args, inputs=("dataset",), outputs=("output", "run_out"))
  run_eval(args, make_encoder=_data_parallel_encoder)


def cmd_data_convert(args: argparse.Namespace) -> None:
  from rejax.data.convert import convert
  from rejax.storage import as_path, check_store

  check_store(as_path(args.output, "--output"), "--output")
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


def cmd_data_mine(args: argparse.Namespace) -> None:
  from rejax.teacher.mine import MineSettings, mine
  from rejax.teacher.record_files import check_new_output

  _locate(args, outputs=("output",))
  check_new_output(args.output)  # before the inputs are staged
  _locate(args, inputs=("corpus", "input"))
  settings = MineSettings(range_min=args.range_min, range_max=args.range_max, negatives=args.negatives,
                          sampling=args.sampling, absolute_margin=args.absolute_margin,
                          relative_margin=args.relative_margin, max_score=args.max_score, seed=args.seed,
                          include_scores=args.include_scores)
  summary = mine(args.model, args.corpus, args.input, args.output, settings, cross_encoder=args.cross_encoder,
                 titles=args.titles, split=args.split, instruction=args.instruction, domain=args.domain,
                 dtype=args.dtype, max_length=args.max_length, batch_size=args.batch_size, cache_dir=args.cache_dir)
  print(f"wrote {summary['records']} records to {args.output} ({summary['dropped_without_negative']} queries without "
        f"a negative left out, {summary['short_of_negatives']} with fewer than {args.negatives}; "
        f"{summary['filtered_out']} of {summary['window_candidates']} window candidates filtered out)", file=sys.stderr)


def cmd_data_score(args: argparse.Namespace) -> None:
  from rejax.teacher.record_files import check_new_output
  from rejax.teacher.score import score

  _locate(args, outputs=("output",))
  check_new_output(args.output)  # before the input is staged
  _locate(args, inputs=("input",))
  summary = score(args.teacher, args.input, args.output, logits=args.logits, dtype=args.dtype,
                  max_length=args.max_length, batch_size=args.batch_size)
  print(f"wrote {summary['records']} records with teacher scores to {args.output} (mean positive "
        f"{summary['mean_pos_score']:.4f}, mean negative {summary['mean_neg_score']:.4f})", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> None:
  from rejax.errors import InputError
  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.loop import train
  from rejax.train.preemption import EXIT_PREEMPTED, Preempted

  from rejax.storage import as_path, check_store

  workdir = as_path(args.workdir, "--workdir")
  config = apply_overrides(load_config_file(args.config), args.overrides)
  check_store(workdir, "--workdir")  # a bucket that is missing or unreachable: one line before any work
  if workdir.exists() and not workdir.is_dir():
    raise InputError(f"--workdir {args.workdir}: is a file, not a directory")
  try:
    train(config, workdir, coordinator=args.coordinator, num_processes=args.num_processes,
          process_id=args.process_id, heartbeat_timeout=args.heartbeat_timeout)
  except Preempted as e:  # not an error: the checkpoint is complete, and the same command resumes from it
    print(f"rejax train: {e}", file=sys.stderr, flush=True)
    sys.exit(EXIT_PREEMPTED)


def cmd_plan(args: argparse.Namespace) -> None:
  import jax

  from rejax.train.config import apply_overrides, load_config_file
  from rejax.train.plan import EXIT_DOES_NOT_FIT, config_for_slices, format_table, plan
  from rejax.train.topology import resolve_topology

  config = apply_overrides(load_config_file(args.config), args.overrides)  # a bad key fails before any compile
  config = config_for_slices(config, args.num_slices)
  if args.json:
    from rejax.rows import check_output_file

    check_output_file(args.json, "--json")
  try:  # the host's own accelerators are never used: the step is compiled for the topology's devices
    jax.config.update("jax_platforms", "cpu")
  except RuntimeError:
    pass
  topology = resolve_topology(args.topology, args.device_memory, config.mesh.dcn_data)
  report = plan(config, topology, all_buckets=args.all_buckets, find_remedies=not args.no_remedies,
                remat_search=args.remat_search, progress=lambda line: print(line, file=sys.stderr, flush=True))
  print(format_table(report), flush=True)
  if args.json:
    from rejax.io import write_text_atomic

    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
  if not report["fits"]:
    sys.exit(EXIT_DOES_NOT_FIT)


def cmd_export(args: argparse.Namespace) -> None:
  from rejax.train.export_run import export_run

  from rejax.storage import as_path, check_store

  workdir, output = as_path(args.workdir, "--workdir"), as_path(args.output, "--output")
  if args.push_to_hub:
    from rejax.hf.hub import check_push_target

    check_push_target(args.push_to_hub, output)  # before any work: a bad id or an offline hub loses nothing
  check_store(workdir, "--workdir")
  check_store(output, "--output")
  export_run(workdir, output, step=args.step, overwrite=args.overwrite)
  if args.push_to_hub:
    import jax

    from rejax.hf.hub import push_to_hub

    if jax.process_index() == 0:
      print(f"pushed {output} to {push_to_hub(output, args.push_to_hub)}", file=sys.stderr, flush=True)


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
                                      batch_size=args.batch_size, dim=args.dim)

  mesh = make_mesh(data=jax.device_count())
  with use_mesh(mesh):
    return Encoder.from_pretrained(args.model, dtype=args.dtype, max_length=args.max_length,
                                   batch_size=args.batch_size, mesh=mesh, pack=args.pack, dim=args.dim)


def bounded_int(minimum: int, maximum: int = MAX_FLAG_INT):
  """An argparse `type` for integers in [minimum, maximum]: a value outside fails before any work, and argparse's
  message names the flag (`argument --batch-size: must be >= 1, got -1`)."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    if value > maximum:  # e.g. 10**30: it would overflow an array size or faiss's int k
      shown = text if len(text) <= 20 else f"{text[:20]}... ({len(text)} digits)"
      raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {shown}")
    return value

  parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some messages
  return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
_any_int = bounded_int(-MAX_FLAG_INT)  # `data pairs` checks its own minimum (exit 1, naming the flag and value)


def _step_arg(text: str) -> int | str:
  if text == "best":
    return text
  if not text.isdigit():
    raise argparse.ArgumentTypeError(f"expected a step number or `best`, got {text!r}")
  return non_negative_int(text)


def _memory_arg(text: str) -> int:
  from rejax.train.topology import parse_memory

  try:
    return parse_memory(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def _add_encoder_args(parser: argparse.ArgumentParser) -> None:
  from rejax.data.text import MIN_LENGTH

  parser.add_argument("--max-length", type=bounded_int(MIN_LENGTH), default=512,
                      help="tokens per text, EOS included (>= 2: one token and EOS)")
  parser.add_argument("--batch-size", type=positive_int, default=32)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="parameter and compute dtype")
  parser.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                      help="pack several texts into each row of a batch (the same embeddings, less padding)")
  parser.add_argument("--dim", type=positive_int, metavar="N",
                      help="keep the first N numbers of each embedding, renormalised (a model trained with "
                           "loss.matryoshka_dims; sentence-transformers' truncate_dim)")


def _add_debug_flag(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
  # SUPPRESS on subcommands: their default must not overwrite `rejax --debug CMD`.
  parser.add_argument("--debug", action="store_true", default=default,
                      help="on an error, show the full traceback (as does REJAX_DEBUG=1)")


def build_parser() -> argparse.ArgumentParser:
  from rejax.eval.cache import default_cache_dir

  parser = argparse.ArgumentParser(prog="rejax", description="ReasonEmbed in JAX: train, evaluate, export.")
  _add_debug_flag(parser, default=False)
  commands = parser.add_subparsers(dest="command", required=True)

  encode = commands.add_parser("encode", help="embed the texts of a JSONL file into an .npy matrix")
  encode.add_argument("--model", required=True,
                      help="Hugging Face model directory (Qwen3 or Llama; or gs://...) or hub id")
  encode.add_argument("--input", required=True, help='JSONL, one {"text": ...} per line (a file or gs://...)')
  encode.add_argument("--output", required=True, help="output .npy, float32 [N, hidden] (a file or gs://...)")
  encode.add_argument("--instruction", help="format each text as `Instruct: {instruction}\\nQuery: {text}`")
  _add_encoder_args(encode)
  encode.set_defaults(run=cmd_encode)

  from rejax.eval.benchmarks import BENCHMARKS, DATASET, benchmark_options, in_words

  evaluate = commands.add_parser("eval", help="retrieval metrics of a model (or bm25) on "
                                 + in_words(["a BEIR dataset", *(b.display_name for b in BENCHMARKS.values())], "or")
                                 + "; or a report comparing the models evaluated in a directory")
  evaluate.add_argument("--model", help="HF model directory (or gs://...), hub id, or `bm25`")
  source = evaluate.add_mutually_exclusive_group(required=True)
  source.add_argument(f"--{DATASET.name}", dest=DATASET.name, help=DATASET.help)
  for benchmark in BENCHMARKS.values():
    source.add_argument(benchmark.flag, dest=benchmark.name, help=benchmark.help)
  source.add_argument("--report", type=pathlib.Path,
                      help="write DIR/table.md and DIR/chart.png comparing every RESULTS.json under DIR")
  evaluate.add_argument("--tasks", help="comma-separated benchmark tasks (default: all, in the paper's order)")
  for option in benchmark_options().values():
    evaluate.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
  evaluate.add_argument("--output",
                        help="RESULTS.json, a file or gs://... (required with --dataset; benchmarks default to "
                             f"results/{{{','.join(BENCHMARKS)}}}/MODEL/RESULTS.json, with RESULTS.md and runs/ "
                             "beside it)")
  evaluate.add_argument("--split", default="test", help="--dataset's judgments: qrels/{split}.tsv (default: test)")
  evaluate.add_argument("--run-out", help="TREC run file: qid Q0 docid rank score tag (a file or gs://...)")
  evaluate.add_argument("--instruction", help="query instruction (`Instruct: ...\\nQuery: ...`)")
  evaluate.add_argument("--top-k", type=positive_int, default=1000)
  evaluate.add_argument("--index", default="flat", choices=["flat", "hnsw", "ivf"],
                        help="faiss index: exact inner product (default) or approximate")
  evaluate.add_argument("--cache-dir", type=pathlib.Path, default=default_cache_dir(),
                        help="where corpus embeddings are cached (default: $REJAX_CACHE/embeddings or "
                             "~/.cache/rejax/embeddings)")
  _add_encoder_args(evaluate)
  evaluate.set_defaults(run=cmd_eval, max_length=None)  # None: the benchmark's (rejax.eval.benchmarks)
  train = commands.add_parser("train", help="train (or resume) a run: rejax train --config FILE.py[:ARG] --workdir DIR "
                                             "[--config.KEY=VALUE ...]")
  train.add_argument("--config", required=True, help="configs/NAME.py[:ARG], a file with get_config(arg)")
  train.add_argument("--workdir", required=True,
                     help="checkpoints, metrics.jsonl, tensorboard/, export/ (a directory or gs://BUCKET/PATH); "
                          "the same DIR resumes")
  train.add_argument("--coordinator", help="host:port of process 0, for multi-process runs outside TPU pods / SLURM")
  train.add_argument("--num-processes", type=positive_int)
  train.add_argument("--process-id", type=non_negative_int)
  train.add_argument("--heartbeat-timeout", type=positive_int, metavar="SECONDS",
                     help="multi-process runs: a process silent this long is taken as lost, and every other one stops "
                          "naming it (default: JAX's, 100)")
  train.set_defaults(run=cmd_train)

  plan = commands.add_parser("plan", help="compile the run's train step for a TPU topology or cpu:N without the "
                                           "hardware: memory per device, fit, estimated speed; exit 3 if a shape "
                                           "does not fit")
  plan.add_argument("--config", required=True, help="configs/NAME.py[:ARG], as for rejax train")
  plan.add_argument("--topology", required=True,
                    help="a TPU topology (v5p:2x2x4, v5e:4x4, v6e:4x4, ...; needs rejax[tpu]) or cpu:N")
  plan.add_argument("--num-slices", type=positive_int, metavar="N",
                    help="plan N slices of the TPU topology joined by the data-centre network (multislice): sets "
                         "mesh.dcn_data=N, the config's mesh.data/fsdp/tensor being one slice's, and compares each "
                         "shape with one slice (default: the config's mesh.dcn_data, 1)")
  plan.add_argument("--json", type=pathlib.Path, help="also write the plan as JSON to this new file")
  plan.add_argument("--device-memory", type=_memory_arg,
                    help="memory per device to plan against, e.g. 16GiB (default: the chip's; cpu:N: RAM / N)")
  plan.add_argument("--all-buckets", action="store_true",
                    help="every (query, passage, reasoning) length bucket combination, not only the longest")
  plan.add_argument("--no-remedies", action="store_true",
                    help="do not search for the setting that makes a shape fit (each try is one more compile)")
  plan.add_argument("--remat-search", action="store_true",
                    help="compile every shape under each model.remat policy (none, dots, mlp, mlp_up, full) and "
                         "name the fastest that fits every shape (four more compiles per shape; a refused one takes "
                         "seconds)")
  plan.set_defaults(run=cmd_plan)

  export = commands.add_parser("export", help="a run's checkpoint -> Hugging Face + sentence-transformers directory")
  export.add_argument("--workdir", required=True, help="the run's workdir (a directory or gs://BUCKET/PATH)")
  export.add_argument("--step", type=_step_arg,
                      help="checkpoint step, or `best` (the kept best by eval.metric; default: the latest)")
  export.add_argument("--output", required=True,
                      help="a new or empty directory or gs://BUCKET/PATH (not the workdir, nor the base model)")
  export.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty --output whole (the new export is renamed into place when complete)")
  export.add_argument("--push-to-hub", metavar="ORG/NAME",
                      help="then upload --output (model card included) to this hub model repo, created if needed")
  export.set_defaults(run=cmd_export)

  data = commands.add_parser("data", help="training data: convert released JSONL to ArrayRecord")
  data_commands = data.add_subparsers(dest="data_command", required=True)
  convert = data_commands.add_parser("convert", help="reason-embed-data JSONL -> TFDS/ArrayRecord dataset")
  convert.add_argument("--input", required=True, nargs="+",
                       help="files or globs of `{domain}-formatted.jsonl[.gz]` (quote globs)")
  convert.add_argument("--output", required=True, help="new dataset directory, or gs://BUCKET/PATH")
  convert.add_argument("--skip-invalid", action="store_true", help="skip and count malformed lines instead of stopping")
  convert.add_argument("--num-shards", type=positive_int,
                       help="ArrayRecord shards per domain (default: by size, 64 MiB-1 GiB)")
  convert.set_defaults(run=cmd_data_convert)

  from rejax.data.weak_pairs import GENERIC_INSTRUCTION

  pairs = data_commands.add_parser("pairs", help="weakly supervised training data from a corpus alone: each titled "
                                   "document's title -> its body, BM25 hard negatives, a held-out dev set")
  pairs.add_argument("--corpus", required=True, type=pathlib.Path, help='BEIR corpus.jsonl ({"_id", "title", "text"})')
  pairs.add_argument("--output", required=True, type=pathlib.Path,
                     help="new directory: train/{domain}-formatted.jsonl, dev/ (BEIR, qrels/dev.tsv), pairs.json")
  pairs.add_argument("--domain", help="the training domain's name (default: the corpus's directory name)")
  pairs.add_argument("--instruction", default=GENERIC_INSTRUCTION, help="the query instruction of every record")
  pairs.add_argument("--dev-queries", type=_any_int, default=100, help="documents held out as dev queries")
  pairs.add_argument("--dev-docs", type=_any_int, default=300, help="documents in the dev corpus")
  pairs.add_argument("--negatives", type=_any_int, default=10, help="BM25 hard negatives per record")
  pairs.add_argument("--min-body-words", type=_any_int, default=20, help="a body needs a line of this many words")
  pairs.add_argument("--seed", type=int, default=0)
  pairs.set_defaults(run=cmd_data_pairs)

  mine = data_commands.add_parser("mine", help="hard negatives mined from a corpus with a model (records or BEIR "
                                  "queries + qrels in, released-format records out)")
  mine.add_argument("--model", required=True,
                    help="the searching model: a rejax/HF decoder or sentence-transformers directory, hub id, or bm25")
  mine.add_argument("--corpus", required=True, help='BEIR corpus.jsonl ({"_id", "text", "title"?})')
  mine.add_argument("--input", required=True,
                    help="`{domain}-formatted.jsonl[.gz]` records (a file or a directory; each positive a corpus "
                         "document) or a BEIR directory (queries.jsonl, qrels/{split}.tsv)")
  mine.add_argument("--output", required=True,
                    help="new directory: the records under the input's file names (BEIR: {domain}-formatted.jsonl) "
                         "and mine.json")
  mine.add_argument("--range-min", type=non_negative_int, default=0,
                    help="skip the top N candidates (ranks from 0, positives left out)")
  mine.add_argument("--range-max", type=positive_int, default=100, help="candidates are the ranks below N")
  mine.add_argument("--negatives", type=positive_int, default=10, help="negatives per query")
  mine.add_argument("--sampling", choices=["top", "random"], default="top",
                    help="the best-scoring candidates left, or a seeded random draw of them")
  mine.add_argument("--absolute-margin", type=float, metavar="M",
                    help="drop a candidate scoring above the positive's score - M (likely a false negative)")
  mine.add_argument("--relative-margin", type=float, metavar="R",
                    help="drop a candidate scoring above the positive's score - |score| * R, R in [0, 1)")
  mine.add_argument("--max-score", type=float, help="drop a candidate scoring above this")
  mine.add_argument("--cross-encoder", metavar="MODEL",
                    help="rescore the window's candidates and the positives with this sentence-transformers "
                         "CrossEncoder; the margins, --max-score and top sampling then use its scores")
  mine.add_argument("--include-scores", action="store_true",
                    help="write pos_scores / neg_scores: the scores the negatives were chosen by")
  mine.add_argument("--titles", action=argparse.BooleanOptionalAction, default=True,
                    help="a document is `title\\ntext` (rejax eval's form); --no-titles: its `text` alone")
  mine.add_argument("--split", default="train", help="a BEIR input's judgments: qrels/{split}.tsv (default: train)")
  mine.add_argument("--instruction", help="a BEIR input's query instruction (default: a generic retrieval one)")
  mine.add_argument("--domain", help="a BEIR input's domain, naming the output file (default: its directory's name)")
  mine.add_argument("--seed", type=int, default=0, help="random sampling: query i draws from (seed, i)")
  mine.add_argument("--cache-dir", type=pathlib.Path, default=default_cache_dir(),
                    help="corpus embeddings cache, shared with rejax eval (default: $REJAX_CACHE/embeddings)")

  score = data_commands.add_parser("score", help="teacher scores (pos_scores, neg_scores) added to every record, from "
                                   "a decoder, a sentence-transformers bi-encoder or a CrossEncoder")
  score.add_argument("--teacher", required=True,
                     help="a rejax/HF decoder, sentence-transformers bi-encoder or CrossEncoder directory, or hub id")
  score.add_argument("--input", required=True,
                     help="`{domain}-formatted.jsonl[.gz]` records: a file or a directory of them")
  score.add_argument("--output", required=True,
                     help="new directory: the records under their file names, and score.json")
  score.add_argument("--logits", action="store_true",
                     help="a CrossEncoder's raw logits (FlagEmbedding's teacher scores) instead of its activation")
  from rejax.data.text import MIN_LENGTH

  for leaf in (mine, score):
    leaf.add_argument("--max-length", type=bounded_int(MIN_LENGTH), default=512, help="tokens per text")
    leaf.add_argument("--batch-size", type=positive_int, default=32)
    leaf.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="a decoder's dtype")
  mine.set_defaults(run=cmd_data_mine)
  score.set_defaults(run=cmd_data_score)
  for leaf in (encode, evaluate, train, plan, export, convert, pairs, mine, score):
    _add_debug_flag(leaf)
  return parser


def main(argv: list[str] | None = None) -> None:
  from rejax.errors import is_user_error, one_line

  parser = build_parser()
  # What argparse does not know is left for the config's overrides (`--config.KEY=VALUE`, parsed by
  # ml_collections.config_flags against the config file's keys); only train and plan take them.
  args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
  if overrides and args.command not in ("train", "plan"):
    if overrides[0].startswith(("--config.", "--noconfig.")):
      parser.exit(2, f"rejax {args.command}: error: {overrides[0]}: only `rejax train` and `rejax plan` take "
                     "config overrides\n")
    parser.error(f"unrecognized arguments: {' '.join(overrides)}")
  args.overrides = overrides
  command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
  debug = args.debug or os.environ.get("REJAX_DEBUG", "") not in ("", "0")
  try:
    args.run(args)
  except Exception as e:
    if debug:
      raise
    if is_user_error(e):
      sys.exit(f"rejax {command}: error: {one_line(e)}")
    # a bug, or JAX's runtime failing: still one line, with the way to its traceback
    sys.exit(f"rejax {command}: internal error: {type(e).__name__}: {one_line(e)} (rerun with --debug or "
             "REJAX_DEBUG=1 for the traceback)")


if __name__ == "__main__":
  main()
