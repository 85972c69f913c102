"""Sequence packing: several sequences in one row of a fixed length, so a batch spends its compute on tokens.

A padded batch [N, T] of right-padded sequences becomes packed rows [R, T] (R <= N), filled first-fit-decreasing
(longest sequence first, each into the first row with room for it). The model attends within each sequence only
and restarts positions at 0 per sequence (rejax.models.Decoder with `packed=True`), so a packed sequence is
encoded exactly as it would be alone. The rows count is rounded up a ladder (a multiple of `row_multiple`
times a power of two, at most N), so a run compiles few shapes per input; the length is the padded batch's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def max_segments(length: int) -> int:
  """Slots per packed row of `length` tokens: one per 8 tokens, from 1 to 16. A row takes no more sequences."""
  return max(1, min(16, length // 8))


@dataclasses.dataclass(frozen=True)
class PackedRows:
  """Packed sequences: `ids` and `segments` [R, T] (segment 1, 2, ... per sequence in the row, 0 for padding),
  `last` [R, S] (the position of each slot's last token; 0 for an empty slot) and `index` [N] (the slot
  r * S + s of each input sequence, in the input order)."""

  ids: np.ndarray
  segments: np.ndarray
  last: np.ndarray
  index: np.ndarray

  @property
  def rows(self) -> int:
    return self.ids.shape[0]

  def with_rows(self, rows: int, pad_id: int) -> PackedRows:
    """The same packing with empty rows appended up to `rows`."""
    extra = rows - self.rows
    if extra < 0:
      raise ValueError(f"cannot shrink {self.rows} packed rows to {rows}")
    grow = lambda x, value=0: np.pad(x, ((0, extra), (0, 0)), constant_values=value)  # noqa: E731
    return PackedRows(grow(self.ids, pad_id), grow(self.segments), grow(self.last), self.index)


def first_fit_decreasing(lengths: np.ndarray, capacity: int, max_per_row: int) -> tuple[np.ndarray, np.ndarray]:
  """(row, offset) of every sequence: longest first, each into the first row with `capacity` tokens free for it
  and fewer than `max_per_row` sequences; rows are used from 0 up. Ties keep the input order."""
  n = len(lengths)
  room = np.full(n, capacity, np.int64)  # n rows always suffice: each sequence fits a row alone
  count = np.zeros(n, np.int64)
  row, offset = np.zeros(n, np.int64), np.zeros(n, np.int64)
  for i in np.argsort(-lengths, kind="stable"):
    r = int(np.argmax((room >= lengths[i]) & (count < max_per_row)))
    row[i], offset[i] = r, capacity - room[r]
    room[r] -= lengths[i]
    count[r] += 1
  return row, offset


def row_ladder(needed: int, multiple: int, cap: int) -> int:
  """The rows of a packed batch: the smallest `multiple` * 2^k that holds `needed`, at most `cap` rounded up
  to `multiple`."""
  top = -(-cap // multiple) * multiple
  rows = multiple
  while rows < needed and rows < top:
    rows *= 2
  return max(min(rows, top), -(-needed // multiple) * multiple)


def pack(ids_nt: np.ndarray, mask_nt: np.ndarray, pad_id: int, *, row_multiple: int = 1) -> PackedRows:
  """Packs the right-padded rows of `ids_nt` (real tokens where `mask_nt` is 1, all before any padding)."""
  n, length = ids_nt.shape
  lengths = mask_nt.sum(axis=1).astype(np.int64)
  if np.any(lengths == 0):
    raise ValueError(f"row {int(np.argmin(lengths))} has no tokens: an empty sequence has no embedding")
  if not np.array_equal(mask_nt.astype(bool), np.arange(length)[None, :] < lengths[:, None]):
    raise ValueError("packing needs right-padded rows (every row's real tokens first, then padding)")
  row, offset = first_fit_decreasing(lengths, length, max_segments(length))
  rows = row_ladder(int(row.max()) + 1, row_multiple, n)
  return lay_out([ids_nt[i, : lengths[i]] for i in range(n)], row, offset, rows, length, pad_id)


def lay_out(sequences, row: np.ndarray, offset: np.ndarray, rows: int, length: int, pad_id: int) -> PackedRows:
  """PackedRows [rows, length] with sequence i at (row[i], offset[i]), slots numbered left to right per row."""
  slots = max_segments(length)
  ids = np.full((rows, length), pad_id, np.int32)
  segments = np.zeros((rows, length), np.int32)
  last = np.zeros((rows, slots), np.int32)
  slot = np.zeros(len(sequences), np.int64)
  used = np.zeros(rows, np.int64)
  for i in np.lexsort((offset, row)):  # row by row, left to right
    r, start, end = row[i], offset[i], offset[i] + len(sequences[i])
    slot[i] = used[r]
    used[r] += 1
    ids[r, start:end] = sequences[i]
    segments[r, start:end] = slot[i] + 1
    last[r, slot[i]] = end - 1
  return PackedRows(ids, segments, last, (row * slots + slot).astype(np.int32))
