"""Writes a long-document collection in the BEIR layout (sample_data/clinical_trials/) from a 1,000-trial subset of
the TREC 2021 Clinical Trials track: each patient description is a query, each ClinicalTrials.gov record a document,
judged by NIST as eligible (2), excluded (1) or not relevant (0).

COMMAND: python scripts/make_clinical_trials_fixture.py CLINICAL_TRIALS_DIR [--output sample_data/clinical_trials]
         python scripts/make_clinical_trials_fixture.py CLINICAL_TRIALS_DIR --check sample_data/clinical_trials

CLINICAL_TRIALS_DIR is a checkout of github.com/albatros13/clinicalTrials (sample_data/clinical_trials/PROVENANCE.md
names the commit): it reads data/eval/selected_trials/NCT*.xml, data/all/topics2021.xml and data/all/qrels2021.txt
(the official qrels, kept for the 1,000 trials). With --check nothing is written; the exit status is 1, naming the
file, unless DIR holds exactly these bytes. Deterministic: the same inputs give byte-identical files.

A document is the trial's brief title (its title) and, as its text, the brief summary, the detailed description, the
conditions and the eligibility criteria with the sex and age limits: the fields a patient is matched on. Each
paragraph's whitespace is collapsed to single spaces; nothing else is changed.
"""

import re
import xml.etree.ElementTree as ET

from fixture_files import beir_files, parse_args, write_or_check


def paragraphs(text: str | None) -> list[str]:
  """The blank-line-separated paragraphs of an XML textblock, each on one line with its whitespace collapsed."""
  blocks = re.split(r"\n\s*\n", (text or "").replace("\r", ""))
  return [" ".join(block.split()) for block in blocks if block.strip()]


def trial_document(path) -> dict:
  root = ET.parse(path).getroot()
  lines = paragraphs(root.findtext("brief_summary/textblock"))
  lines += paragraphs(root.findtext("detailed_description/textblock"))
  conditions = [c.text.strip() for c in root.findall("condition") if c.text and c.text.strip()]
  if conditions:
    lines.append("Conditions: " + "; ".join(conditions) + ".")
  eligibility = root.find("eligibility")
  if eligibility is not None:
    criteria = paragraphs(eligibility.findtext("criteria/textblock"))
    if criteria:
      lines += ["Eligibility criteria:", *criteria]
    limits = [f"{label}: {eligibility.findtext(tag).strip()}" for label, tag in
              (("Sex", "gender"), ("Minimum age", "minimum_age"), ("Maximum age", "maximum_age"))
              if (eligibility.findtext(tag) or "").strip()]
    if limits:
      lines.append(". ".join(limits) + ".")
  return {"_id": root.findtext("id_info/nct_id").strip(), "title": " ".join(root.findtext("brief_title").split()),
          "text": "\n".join(lines)}


def topics(path) -> list[dict]:
  root = ET.parse(path).getroot()
  return [{"_id": t.get("number"), "text": " ".join(t.text.split())} for t in root.findall("topic")]


def main() -> None:
  args = parse_args(__doc__.split("\n")[0], "source", "checkout of albatros13/clinicalTrials",
                    "sample_data/clinical_trials")
  corpus = [trial_document(p) for p in sorted((args.source / "data" / "eval" / "selected_trials").glob("NCT*.xml"))]
  ids = {d["_id"] for d in corpus}
  judged = []
  for line in (args.source / "data" / "all" / "qrels2021.txt").read_text().splitlines():
    qid, _, did, grade = line.split()
    if did in ids:
      judged.append((qid, did, int(grade)))
  judged.sort(key=lambda row: (int(row[0]), row[1]))
  with_judgments = {qid for qid, _, _ in judged}
  queries = [q for q in topics(args.source / "data" / "all" / "topics2021.xml") if q["_id"] in with_judgments]
  write_or_check(beir_files(corpus, queries, judged), args.output, args.check)
  if args.check is None:
    print(f"wrote {len(queries)} queries, {len(corpus)} documents and {len(judged)} judgments to {args.output}")


if __name__ == "__main__":
  main()
