"""The README.md model card of an export: what the model is, how to load it (with its prompts), how it was trained
and how it scored where the run knows. YAML metadata that `huggingface_hub.ModelCard.load` parses (base model,
library, pipeline tag), then markdown."""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from rejax.hf.hub import is_hub_id
from rejax.models import DecoderConfig
from rejax.models.families import family_of


@dataclasses.dataclass(frozen=True)
class CardFacts:
  """What a card says beyond the model itself: where it came from, how it was trained, how it scored."""

  base_model: str  # the model argument it was trained from: a hub id, a directory, `asset:NAME`; "" = random init
  training: Mapping[str, object] = dataclasses.field(default_factory=dict)  # setting -> value, in order
  results: Mapping[str, float] = dataclasses.field(default_factory=dict)  # metric -> figure (the run's dev eval)
  results_on: str = ""  # what the results were measured on (a dataset and split)


def model_card(cfg: DecoderConfig, facts: CardFacts, *, prompts: Mapping[str, str], max_seq_length: int,
               matryoshka_dims: Sequence[int] = (), name: str = "this model") -> str:
  """The card's text (README.md)."""
  from huggingface_hub import ModelCardData

  data = ModelCardData(library_name="sentence-transformers", pipeline_tag="sentence-similarity",
                       base_model=facts.base_model if is_hub_id(facts.base_model) else None,
                       tags=["sentence-transformers", "feature-extraction", "sentence-similarity", "rejax",
                             "reasonembed"])
  first = next(iter(prompts), None)
  sections = [f"# {name}", _what_it_is(cfg, facts, max_seq_length, matryoshka_dims),
              _usage(first, matryoshka_dims), _prompts(prompts)]
  if facts.training:
    sections.append("## Training\n\n" + _table({k: v for k, v in facts.training.items()}, ("setting", "value")))
  if facts.results:
    on = f" on {facts.results_on}" if facts.results_on else ""
    sections.append(f"## Evaluation\n\nMeasured during training{on} (`rejax train`'s dev evaluation):\n\n"
                    + _table({k: f"{v:.4f}" for k, v in facts.results.items()}, ("metric", "value")))
  sections.append(_limits())
  return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n"


def _what_it_is(cfg: DecoderConfig, facts: CardFacts, max_seq_length: int, matryoshka_dims: Sequence[int]) -> str:
  base = f"`{facts.base_model}`" if facts.base_model else "a randomly initialised decoder"
  pooling = ("the mean of the tokens' final hidden states" if cfg.pooling == "mean"
             else "the last token's final hidden state")
  text = (f"A text embedding model trained with rejax (JAX; the ReasonEmbed recipe) from {base}: "
          f"a {family_of(cfg.model_type).transformers_class} of {cfg.num_hidden_layers} layers with "
          f"{'causal' if cfg.causal else 'bidirectional'} attention; the embedding ({cfg.hidden_size} numbers, "
          f"L2-normalised, compared by cosine) is {pooling}. Texts are cut at {max_seq_length} tokens, EOS included.")
  if matryoshka_dims:
    sizes = ", ".join(str(d) for d in sorted(matryoshka_dims, reverse=True))
    text += (f"\n\nTrained as a Matryoshka model at sizes {sizes}: the first N numbers of an embedding, renormalised, "
             "are an embedding too (`truncate_dim=N` in sentence-transformers, `--dim N` in `rejax encode`).")
  return text


def _usage(prompt_name: str | None, matryoshka_dims: Sequence[int]) -> str:
  query = (f'model.encode(queries, prompt_name="{prompt_name}")' if prompt_name
           else "model.encode(queries)")
  truncate = (f'  # or truncate_dim={min(matryoshka_dims)}: a trained prefix size\n' if matryoshka_dims else "\n")
  return ("## Usage\n\nQueries carry their task's instruction (a prompt below); documents are encoded as they are.\n\n"
          "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
          f'model = SentenceTransformer("PATH_OR_REPO"){truncate}'
          f"query_embeddings = {query}\n"
          "document_embeddings = model.encode(documents)\n"
          "scores = model.similarity(query_embeddings, document_embeddings)\n```\n\n"
          "With transformers alone: `AutoModel.from_pretrained(...)` gives the final hidden states; pool them as "
          "above and L2-normalise. With rejax: `rejax encode --model PATH --input texts.jsonl --output emb.npy "
          "[--instruction TEXT]`.")


def _prompts(prompts: Mapping[str, str]) -> str:
  if not prompts:
    return "## Prompts\n\nNone: queries and documents are encoded as they are."
  rows = {name: "`" + text.replace("\n", "\\n") + "`" for name, text in prompts.items()}
  return "## Prompts\n\nEach is prepended to a query (`prompt_name=`):\n\n" + _table(rows, ("prompt_name", "prompt"))


def _limits() -> str:
  return ("## Intended use and limits\n\nRetrieval and similarity for English text, in particular queries that need "
          "reasoning to match their documents. Measure it on your own data before relying on it; it inherits the "
          "base model's licence, languages and limitations.")


def _table(rows: Mapping[str, object], header: tuple[str, str]) -> str:
  lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
  lines += [f"| {key} | {_cell(value)} |" for key, value in rows.items()]
  return "\n".join(lines)


def _cell(value: object) -> str:
  return str(value).replace("|", "\\|")
