"""`synth` command line: one subcommand per stage, `run` for all of them, and `contamination`.

    synth run --config configs/synth/demo.py [--config.KEY=VALUE ...] [--shard i/N] [--domain a,b]
    synth run --config configs/synth/bright.py:/data/bright --engine ray   # the stages' work on a Ray cluster
    synth generate --config configs/synth/bright.py:/data/bright --shard 0/4
    synth contamination --synthetic 'runs/synth/demo/format/*.jsonl' --eval bright/examples/pony.jsonl.gz --output DIR

Errors are one line on stderr, `synth CMD: error: MESSAGE`, and exit status 1 (as `rejax`: 2 is a usage
error, a flag the command does not take; 3 is a shard that is done while others are not). The message names
the thing (config key, flag, file, backend and URL); the traceback is shown only with --debug or
SYNTH_DEBUG=1 (REJAX_DEBUG=1 too). Secrets are redacted in both.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import traceback

DEBUG_ENV = ("SYNTH_DEBUG", "REJAX_DEBUG")


def cmd_stage(args: argparse.Namespace, overrides: list[str]) -> int:
  from synth.config import ConfigError, load_config
  from synth.context import Context
  from synth.pipeline import run_all, run_stage
  from synth.units import Shard

  if args.engine:
    overrides = [*overrides, f"--config.engine={args.engine}"]
  config = load_config(args.config, overrides)
  if config.engine == "ray" and args.shard != "0/1":
    raise ConfigError(f"--shard {args.shard}: with engine='ray' Ray schedules the units over the cluster; "
                      "--shard is for the local engine (e.g. a SLURM array without Ray)")
  ctx = Context(config, shard=Shard.parse(args.shard), progress=not args.no_progress)
  domains = args.domain.split(",") if args.domain else None
  try:
    done = run_all(ctx, domains) if args.command == "run" else run_stage(ctx, args.command, domains)
  finally:
    ctx.close()
  return 0 if done else 3  # 3: this shard is done, others are not


def cmd_contamination(args: argparse.Namespace, overrides: list[str]) -> int:
  from synth.contamination import check

  summary = check(args.synthetic, args.eval, args.output, bins=args.bins)
  print(f"max weighted Jaccard per synthetic query: mean {summary['mean']:.3f}, p99 {summary['p99']:.3f}, "
        f"max {summary['max']:.3f}; {summary['n_synthetic']} synthetic vs {summary['n_eval']} eval queries; "
        f"wrote {args.output}", file=sys.stderr)
  return 0


def build_parser() -> argparse.ArgumentParser:
  from synth.pipeline import STAGES

  parser = argparse.ArgumentParser(prog="synth", description="ReMixer data synthesis (docs/method.md#data-synthesis).")
  add_debug_flag(parser, default=False)
  commands = parser.add_subparsers(dest="command", required=True)
  for name, help_text in [("run", "every enabled stage in order"),
                          *((s, (STAGES[s].__doc__ or "").splitlines()[0]) for s in STAGES)]:
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("--config", required=True,
                     help="configs/synth/NAME.py[:ARG]; override keys with --config.KEY=VALUE")
    sub.add_argument("--engine", choices=("local", "ray"),
                     help="where the work runs: this process (local) or Ray (ray; pip install -e '.[synth,ray]'); "
                          "default: the config's `engine`")
    sub.add_argument("--shard", default="0/1", help="i/N: run the work units u with u %% N == i (default 0/1; "
                     "local engine only)")
    sub.add_argument("--domain", help="comma-separated domains (default: all of the config's)")
    sub.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_flag(sub)
    sub.set_defaults(handler=cmd_stage)
  check = commands.add_parser("contamination", help="weighted Jaccard of synthetic vs evaluation queries")
  check.add_argument("--synthetic", nargs="+", required=True, help="JSONL(.gz) files or globs with `query`")
  check.add_argument("--eval", nargs="+", required=True, help="JSONL(.gz) files or globs with `query` or `text`")
  check.add_argument("--output", required=True, type=pathlib.Path, help="directory for summary.json and histogram.png")
  check.add_argument("--bins", type=int, default=50)
  add_debug_flag(check)
  check.set_defaults(handler=cmd_contamination)
  return parser


def add_debug_flag(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
  # SUPPRESS on subcommands: their default must not overwrite `synth --debug CMD`.
  parser.add_argument("--debug", action="store_true", default=default,
                      help="on an error, show the full traceback (as does SYNTH_DEBUG=1)")


def main(argv: list[str] | None = None) -> int:
  """Runs one command; returns its exit status (0 done, 1 an error reported on one line, 3 other shards pending)."""
  from rejax.errors import is_user_error

  # What argparse does not know is left for the stage config's overrides (`--config.KEY=VALUE`).
  parser = build_parser()
  args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  if overrides and args.command == "contamination":
    if overrides[0].startswith(("--config.", "--noconfig.")):
      parser.exit(2, f"synth contamination: error: {overrides[0]}: only the stage commands take config overrides\n")
    parser.error(f"unrecognized arguments: {' '.join(overrides)}")
  debug = args.debug or any(os.environ.get(name, "") not in ("", "0") for name in DEBUG_ENV)
  try:
    return args.handler(args, overrides)
  except Exception as e:  # bad config or flag, missing input, malformed file:line, a backend that failed; or a bug
    return report_error(f"synth {args.command}", e, debug=debug, internal=not is_user_error(e))


def report_error(prog: str, error: BaseException, *, debug: bool, internal: bool = False) -> int:
  """Prints `PROG: error: MESSAGE` (one line, secrets redacted; the traceback before it with --debug); returns 1."""
  from rejax.errors import one_line
  from synth.report import redact

  if debug:
    print(redact("".join(traceback.format_exception(error))), file=sys.stderr, end="")
  if internal:
    line = (f"{prog}: internal error: {type(error).__name__}: {one_line(error)}"
            + ("" if debug else " (rerun with --debug or SYNTH_DEBUG=1 for the traceback)"))
  else:
    line = f"{prog}: error: {one_line(error)}"
  print(redact(line), file=sys.stderr)
  return 1


if __name__ == "__main__":
  sys.exit(main())
