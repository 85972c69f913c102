"""Per-domain settings of the synthesis: what a query looks like, what relevance means, (G, batch).

The 12 BRIGHT domains are presets, read from the one table of rejax.domains (docs/method.md#per-domain-batches,
#query-instructions); a user's own corpus is a domain whose config block gives these fields itself.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from rejax.data.records import DOMAIN_PATTERN
from rejax.domains import DOMAINS, Domain


@dataclasses.dataclass(frozen=True)
class DomainSpec:
  """Everything the prompts and the formatter need to know about one domain."""

  name: str
  topic: str  # what belongs to the domain (the filter's question)
  instruction: str  # the retrieval instruction stored as `prompt` and used for mining
  query_kind: str  # what to write from a source document
  relevance: str  # when a document is relevant to a query (the annotator's definition)
  group_size: int  # G: passages per query in a training group
  batch_size: int  # queries per device


def _preset(domain: Domain) -> DomainSpec:
  """The synthesis spec of a training domain of rejax.domains (its batch per device of the paper's 8)."""
  return DomainSpec(domain.name, topic=domain.topic, instruction=domain.instruction, query_kind=domain.query_kind,
                    relevance=domain.relevance, group_size=domain.group_size, batch_size=domain.per_device_batch)


BRIGHT: dict[str, DomainSpec] = {name: _preset(domain) for name, domain in DOMAINS.items()}

FIELDS = tuple(f.name for f in dataclasses.fields(DomainSpec) if f.name != "name")


def check_domain_name(name: str, where: str) -> str:
  """`name` when it is a domain name (rejax.data.convert's rule: lowercase letters, digits and `_`), else a
  ValueError naming `where`: a domain names files under the workdir, so `../x`, `/abs` or `a/b` could escape it."""
  if not isinstance(name, str) or not DOMAIN_PATTERN.fullmatch(name):
    raise ValueError(f"{where}: {name!r} is not a domain name; a domain names files under the workdir, so use "
                     "lowercase letters, digits and `_` (e.g. biology)")
  return name


def domain_spec(name: str, block: Mapping, where: str) -> DomainSpec:
  """The spec of a configured domain: its BRIGHT preset (`preset`, default the domain's name when it is a
  BRIGHT domain) with the block's non-empty fields on top; a field left unset without a preset is an error."""
  check_domain_name(name, "domains")
  preset_name = block.get("preset") or (name if name in BRIGHT else "")
  if preset_name and preset_name not in BRIGHT:
    raise ValueError(f"{where}.preset={preset_name!r}: not a BRIGHT domain ({', '.join(BRIGHT)})")
  values = dataclasses.asdict(BRIGHT[preset_name]) if preset_name else {}
  values.update({k: block[k] for k in FIELDS if block.get(k)})
  missing = [k for k in FIELDS if not values.get(k)]
  if missing:
    raise ValueError(f"{where}: no BRIGHT preset, so set {', '.join(f'{where}.{k}' for k in missing)}")
  values["name"] = name
  return DomainSpec(**values)
