"""Sequence packing: several sequences in one row of a fixed length, so a batch spends its compute on tokens.

A padded batch [N, T] of right-padded sequences becomes packed rows [R, T] (R <= N), filled first-fit-decreasing
(longest sequence first, each into the first row with room for it). The model attends within each sequence only
and restarts positions at 0 per sequence (rejax.models.Decoder with `packed=True`), so a packed sequence is
encoded exactly as it would be alone. Rows and row length are rounded up ladders of four sizes per doubling
(`row_ladder`: a multiple of `row_multiple`, at most N; `length_ladder`: a multiple of 16), so a run compiles a
bounded number of shapes per input; `pack` picks the length that needs the fewest token positions.
"""

from __future__ import annotations

import dataclasses

import numpy as np


LENGTH_GRANULE = 16  # packed rows are a multiple of this many tokens long


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


def _three_bits(n: int) -> int:
  """The smallest m >= n with at most three significant bits: 1, ..., 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...
  (four sizes per doubling, each at most 25% above what it must hold)."""
  n = max(int(n), 1)
  while n.bit_length() > 3 and n & ((1 << (n.bit_length() - 3)) - 1):
    n += 1
  return n


def row_ladder(needed: int, multiple: int, cap: int) -> int:
  """The rows of a packed batch: the smallest `multiple` x n >= `needed` with n on the three-bit ladder, and no
  more than `cap` rounded up to `multiple`."""
  multiple, needed, cap = int(multiple), int(needed), int(cap)
  top = -(-cap // multiple)
  need = -(-needed // multiple)
  return min(_three_bits(need), max(top, need)) * multiple


def length_ladder(longest: int, granule: int = LENGTH_GRANULE) -> int:
  """A packed row's length for sequences up to `longest` tokens: `granule` x n with n on the three-bit ladder."""
  return _three_bits(-(-longest // granule)) * granule


def pack(ids_nt: np.ndarray, mask_nt: np.ndarray, pad_id: int, *, row_multiple: int = 1,
         length: int | None = None) -> PackedRows:
  """Packs the right-padded rows of `ids_nt` (real tokens where `mask_nt` is 1, all before any padding) into the
  fewest token positions: of the ladder lengths from the longest sequence's up to twice it (at most the padded
  length), the one whose rows x length is smallest; or rows of exactly `length` tokens."""
  n, padded = ids_nt.shape
  lengths = mask_nt.sum(axis=1).astype(np.int64)
  if np.any(lengths == 0):
    raise ValueError(f"row {int(np.argmin(lengths))} has no tokens: an empty sequence has no embedding")
  if not np.array_equal(mask_nt.astype(bool), np.arange(padded)[None, :] < lengths[:, None]):
    raise ValueError("packing needs right-padded rows (every row's real tokens first, then padding)")
  longest = int(lengths.max())
  if length is not None and length < longest:
    raise ValueError(f"rows of {length} tokens cannot hold a sequence of {longest}")
  candidates = [length] if length is not None else _length_candidates(longest, padded)
  best = None
  for t in candidates:
    row, offset = first_fit_decreasing(lengths, t, max_segments(t))
    rows = row_ladder(int(row.max()) + 1, row_multiple, n)
    if best is None or rows * t < best[0] * best[1]:
      best = rows, t, row, offset
  rows, t, row, offset = best
  return lay_out([ids_nt[i, : lengths[i]] for i in range(n)], row, offset, rows, t, pad_id)


def _length_candidates(longest: int, padded: int) -> list[int]:
  out = [min(length_ladder(longest), padded)]
  while out[-1] < min(2 * longest, padded):
    out.append(min(length_ladder(out[-1] + 1), padded))
  return out


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
