"""Running stages over the configured domains: finished (stage, domain) pairs are skipped, summaries printed."""

from __future__ import annotations

from typing import Sequence

from synth.config import LLM_STAGES, ConfigError, stage_enabled
from synth.context import Context
from synth.domains import check_domain_name
from synth.report import say
from synth.stages import annotate, filter as filter_stage, format as format_stage, generate, mine, reason
from synth.summary import StageSummary

STAGES = {m.NAME: m for m in (filter_stage, generate, mine, annotate, reason, format_stage)}


def check_domains(ctx: Context, domains: Sequence[str]) -> None:
  """ConfigError naming `--domain` and the first of `domains` that is not a domain name or not configured."""
  for domain in domains:
    try:
      check_domain_name(domain, "--domain")
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if domain not in ctx.domains:
      raise ConfigError(f"--domain {domain}: not in the config's domains ({', '.join(ctx.domains)})")


def run_stage(ctx: Context, stage: str, domains: Sequence[str] | None = None) -> bool:
  """Runs one stage over `domains` (default all); True when it is complete for every one of them."""
  check_domains(ctx, domains or ())  # all of them, before any work
  if not stage_enabled(ctx.config, stage):
    say(f"{stage}: disabled ({stage}.enabled=False)")
    return True
  complete = True
  for domain in domains or list(ctx.domains):
    marker = ctx.path(stage, domain, ".summary.json")
    if marker.exists():
      say(StageSummary.load(marker).line() + " [done earlier]")
      continue
    summary = STAGES[stage].run(ctx, domain)
    if summary is None:
      complete = False
      continue
    summary.save(marker)  # written last: it marks the (stage, domain) finished
    say(summary.line())
  if stage == format_stage.NAME and complete and domains is None:
    format_stage.finish(ctx)
  return complete


def run_all(ctx: Context, domains: Sequence[str] | None = None) -> bool:
  """Every enabled stage in order; stops (returning False) at the first stage other shards must finish."""
  check_domains(ctx, domains or ())
  order = list(STAGES)
  for i, stage in enumerate(order):
    if not run_stage(ctx, stage, domains):
      say(f"{stage}: waiting for other shards; run again when they are done")
      return False
    # Free models no later stage uses (a 72B generator before an 8B annotator loads, on the same GPUs).
    ctx.close(keep={ctx.config[s].backend for s in order[i + 1:] if s in LLM_STAGES and stage_enabled(ctx.config, s)})
  return True
