"""The errors a `rejax` command reports as one line, `rejax CMD: error: MESSAGE` with exit status 1.

One type per kind of bad input, each message naming the thing (file:line, field, flag, key, id, directory, URL):
  InputError        data files, rows, fields, ids, model and tokenizer directories (rejax.rows and its users)
  StorageError      a bucket that does not exist, credentials missing or refused, a store that does not answer
  ConfigError       config files, keys and values (rejax.train.config, synth.config)
  RecordError       training records (`rejax data convert`), `file:line:` first
  CheckpointError   weights that do not match the model, naming the tensors (rejax.hf.load)
  ExportError       an export output that would lose data or cannot be written
  WriteError        a write that failed (disk full, read-only, forbidden), naming what and where (rejax.io)
  WorkdirInUseError another `rejax train` holds the workdir, naming it and the holder
  AssetError        an asset that is unknown or cannot be fetched or built (rejax.assets)
`rejax.cli.main` prints these, and the OS's file errors, without a traceback (`--debug` or REJAX_DEBUG=1 shows it);
anything else, an error of JAX's runtime included, is an internal error: one line too, pointing at --debug.
"""

from __future__ import annotations

import os


class InputError(ValueError):
  """An input the command cannot use as given; the message names it (file:line, field, flag, id, directory)."""


class StorageError(InputError):
  """A bucket that does not exist, credentials that are missing or refused, a store that does not answer."""


class ConfigError(ValueError):
  """A config file, key or value that cannot be used; the message names it."""


class RecordError(ValueError):
  """A record that does not follow the schema; the message starts with `file:line:`."""


class CheckpointError(ValueError):
  """A checkpoint that does not match the model: the message names the tensors."""


class ExportError(ValueError):
  """An export output that would replace data it must not, or cannot be written; the message names the directory."""


class WriteError(OSError):
  """A write that failed (disk full, read-only or forbidden target, ...). Its message is one line naming what was
  being written and where; `errno` is the OS's; the temporary is already removed."""

  def __init__(self, message: str, code: int | None, path: str | os.PathLike):
    super().__init__(code, message)
    self.filename = str(path)
    self.message = message

  def __str__(self) -> str:
    return self.message


class WorkdirInUseError(RuntimeError):
  """Another `rejax train` holds the workdir; the message names the workdir and the holder (pid, host, since)."""


class AssetError(RuntimeError):
  """An asset is unknown or could not be fetched or built (network, checksum, missing dependency)."""


# What a command reports as the user's problem, on one line: the types above, and the OS's (missing files,
# permissions, a full disk). ValueError and RuntimeError also cover the checks of libraries we call with user input.
USER_ERRORS = (ValueError, OSError, EOFError, RuntimeError, ArithmeticError, MemoryError)

# Modules whose own errors are never the user's: a failure inside JAX's runtime or compiler (XlaRuntimeError,
# JaxRuntimeError: a RuntimeError, or a ValueError from a jitted function's tracing) is a bug or the machine's.
_INTERNAL_MODULES = ("jax", "jaxlib")


def is_user_error(error: BaseException) -> bool:
  """Whether `error` is reported as the user's (`error:`) rather than as an internal error."""
  module = type(error).__module__.split(".")[0]
  return isinstance(error, USER_ERRORS) and module not in _INTERNAL_MODULES


def one_line(error: BaseException) -> str:
  """The error's message on one line (a multi-line message's lines joined by `; `), else its type's name."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  return "; ".join(lines) if lines else type(error).__name__
