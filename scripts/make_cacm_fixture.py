"""Writes the CACM test collection in the BEIR layout (sample_data/cacm/) from Anserini's files.

COMMAND: python scripts/make_cacm_fixture.py CACM_DIR [--output sample_data/cacm]
         python scripts/make_cacm_fixture.py CACM_DIR --check sample_data/cacm   # exit 1 naming a differing file

CACM_DIR holds cacm.tar.gz (3,204 CACM-NNNN.html files, the record inside <pre>), topics.cacm.txt (TREC
SGML) and qrels.cacm.txt (`qid Q0 docid 1`), as Anserini distributes them (sample_data/cacm/PROVENANCE.md
names the commits and sha256). The output is deterministic: the same inputs give byte-identical files.

A record is blank-line separated blocks: the title, then (when present) the abstract, the source
("CACM July, 1966"), the authors, keywords and CR categories, then a record line ("CA660704 JB March
2, 1978 9:45 PM") and a table of citation links (`docnum type docnum`). title = the first block;
text = the blocks between the title and the record line, one line each; the record line and the
citation table are dropped (ids and numbers, not text). Whitespace inside a block is collapsed, so
hard-wrapped lines join with one space. The HTML holds no entities (a raw "&" is text), so none are
decoded. Document ids drop the file names' zero padding (CACM-0061.html is CACM-61), as the qrels do.
"""

import pathlib
import re
import tarfile

from fixture_files import beir_files, parse_args, write_or_check

_PRE = re.compile(r"<pre>(.*)</pre>", re.S)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_RECORD_LINE = re.compile(r"CA\d{6}")
_TOPIC = re.compile(r"<DOC>\s*<DOCNO>\s*(\S+)\s*</DOCNO>(.*?)</DOC>", re.S)


def _collapse(text: str) -> str:
  return " ".join(text.split())


def parse_document(html: str) -> tuple[str, str]:
  """Returns (title, text) of one CACM record."""
  body = _PRE.search(html).group(1)
  blocks = [b for b in _BLANK_LINE.split(body.strip()) if b.strip()]
  (end,) = [i for i, b in enumerate(blocks) if _RECORD_LINE.match(b)]
  return _collapse(blocks[0]), "\n".join(_collapse(b) for b in blocks[1:end])


def read_corpus(tar_path: pathlib.Path) -> list[dict]:
  """Returns the BEIR corpus rows in record-number order."""
  rows = []
  with tarfile.open(tar_path) as tar:
    for member in tar.getmembers():
      if not member.isfile() or not member.name.endswith(".html"):
        continue
      # CACM-0061.html is CACM-61 in the qrels: the judgments use the unpadded record number.
      number = re.fullmatch(r"CACM-(\d{4})", pathlib.PurePosixPath(member.name).stem).group(1)
      docid = f"CACM-{int(number)}"
      title, text = parse_document(tar.extractfile(member).read().decode("ascii"))
      rows.append({"_id": docid, "title": title, "text": text})
  return sorted(rows, key=lambda row: int(row["_id"].removeprefix("CACM-")))


def read_topics(path: pathlib.Path) -> list[dict]:
  """Returns the BEIR query rows in topic-number order."""
  rows = [{"_id": qid, "text": _collapse(text)} for qid, text in _TOPIC.findall(path.read_text())]
  return sorted(rows, key=lambda row: int(row["_id"]))


def read_qrels(path: pathlib.Path) -> list[tuple[str, str, int]]:
  """Returns (query-id, corpus-id, score) sorted by numeric query id, then docid."""
  triples = set()
  for line in path.read_text().splitlines():
    if line.strip():
      qid, _, docid, rel = line.split()
      triples.add((qid, docid, int(rel)))
  return sorted(triples, key=lambda t: (int(t[0]), t[1]))


def main() -> None:
  args = parse_args(__doc__.splitlines()[0], "source",
                    "directory with cacm.tar.gz, topics.cacm.txt, qrels.cacm.txt", "sample_data/cacm")

  corpus = read_corpus(args.source / "cacm.tar.gz")
  queries = read_topics(args.source / "topics.cacm.txt")
  qrels = read_qrels(args.source / "qrels.cacm.txt")
  docids, qids = {row["_id"] for row in corpus}, {row["_id"] for row in queries}
  missing = [(q, d) for q, d, _ in qrels if q not in qids or d not in docids]
  if missing:
    raise ValueError(f"qrels name unknown queries or documents: {missing[:5]}")

  write_or_check(beir_files(corpus, queries, qrels), args.output, args.check)
  if args.check is None:
    print(f"{len(corpus)} documents, {len(queries)} queries, "
          f"{len(qrels)} judgments over {len({q for q, _, _ in qrels})} queries -> {args.output}")


if __name__ == "__main__":
  main()
