"""`synth` command line: one subcommand per stage, `run` for all of them, and `contamination`.

    synth run --config configs/synth/demo.py [--config.KEY=VALUE ...] [--shard i/N] [--domain a,b]
    synth generate --config configs/synth/bright.py:/data/bright --shard 0/4
    synth contamination --synthetic 'runs/synth/demo/format/*.jsonl' --eval bright/examples/pony.jsonl.gz --output DIR
"""

from __future__ import annotations

import argparse
import pathlib
import sys


def cmd_stage(args: argparse.Namespace, overrides: list[str]) -> int:
  from synth.config import load_config
  from synth.context import Context
  from synth.pipeline import run_all, run_stage
  from synth.units import Shard

  config = load_config(args.config, overrides)
  ctx = Context(config, shard=Shard.parse(args.shard), progress=not args.no_progress)
  domains = args.domain.split(",") if args.domain else None
  try:
    done = run_all(ctx, domains) if args.command == "run" else run_stage(ctx, args.command, domains)
  finally:
    ctx.close()
  return 0 if done else 3  # 3: this shard is done, others are not


def cmd_contamination(args: argparse.Namespace, overrides: list[str]) -> int:
  from synth.contamination import check

  if overrides:
    raise SystemExit(f"contamination takes no --config overrides: {overrides}")
  summary = check(args.synthetic, args.eval, args.output, bins=args.bins)
  print(f"max weighted Jaccard per synthetic query: mean {summary['mean']:.3f}, p99 {summary['p99']:.3f}, "
        f"max {summary['max']:.3f}; {summary['n_synthetic']} synthetic vs {summary['n_eval']} eval queries; "
        f"wrote {args.output}", file=sys.stderr)
  return 0


def build_parser() -> argparse.ArgumentParser:
  from synth.pipeline import STAGES

  parser = argparse.ArgumentParser(prog="synth", description="ReMixer data synthesis (METHOD.md section 4).")
  commands = parser.add_subparsers(dest="command", required=True)
  for name, help_text in [("run", "every enabled stage in order"),
                          *((s, (STAGES[s].__doc__ or "").splitlines()[0]) for s in STAGES)]:
    sub = commands.add_parser(name, help=help_text)
    sub.add_argument("--config", required=True, help="configs/synth/NAME.py[:ARG]; override keys with --config.KEY=VALUE")
    sub.add_argument("--shard", default="0/1", help="i/N: run the work units u with u %% N == i (default 0/1)")
    sub.add_argument("--domain", help="comma-separated domains (default: all of the config's)")
    sub.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.set_defaults(handler=cmd_stage)
  check = commands.add_parser("contamination", help="weighted Jaccard of synthetic vs evaluation queries")
  check.add_argument("--synthetic", nargs="+", required=True, help="JSONL(.gz) files or globs with `query`")
  check.add_argument("--eval", nargs="+", required=True, help="JSONL(.gz) files or globs with `query` or `text`")
  check.add_argument("--output", required=True, type=pathlib.Path, help="directory for summary.json and histogram.png")
  check.add_argument("--bins", type=int, default=50)
  check.set_defaults(handler=cmd_contamination)
  return parser


def main(argv: list[str] | None = None) -> int:
  from synth.config import ConfigError, split_overrides

  try:
    argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
  except ConfigError as e:
    raise SystemExit(f"synth: {e}") from None
  args = build_parser().parse_args(argv)
  try:
    return args.handler(args, overrides)
  except (ConfigError, FileNotFoundError, ValueError) as e:  # bad config, missing input, malformed file:line
    print(f"synth: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
