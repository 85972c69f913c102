"""The errors a `rejax` command reports as one line, `rejax CMD: error: MESSAGE` with exit status 1.

One type per layer, each message naming the thing (file:line, field, flag, id or directory):
  InputError    rejax.rows and its users: data files, rows, fields, ids, model and tokenizer directories
  ExportError   rejax.hf.export / rejax.train.export_run: an output that would lose data or cannot be written
  ConfigError   rejax.train.config: config files, keys and values
  RecordError   rejax.data.records: training records (`rejax data convert`)
  CheckpointError, AssetError: weights that do not match a model; assets that are unknown or cannot be fetched
`rejax.cli.main` prints these, and the OS's file errors, without a traceback (`--debug` or REJAX_DEBUG=1 shows it).
"""

from __future__ import annotations


class InputError(ValueError):
  """An input the command cannot use as given; the message names it (file:line, field, flag, id, directory)."""


class ExportError(ValueError):
  """An export output that would replace data it must not, or cannot be written; the message names the directory."""


class ConfigError(ValueError):
  """A config file, key or value that cannot be used; the message names it."""


# What `rejax.cli.main` reports as one line: the types above are ValueErrors (ConfigError, RecordError and
# CheckpointError too; AssetError is a RuntimeError); OSError covers missing files, permissions and a full disk.
USER_ERRORS = (ValueError, OSError, EOFError, RuntimeError, ArithmeticError, MemoryError)


def one_line(error: BaseException) -> str:
  """The error's message on one line (a multi-line message's lines joined by `; `), else its type's name."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return "; ".join(lines) if lines else type(error).__name__
