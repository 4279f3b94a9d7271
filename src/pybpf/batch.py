"""Batches of input records for :meth:`pybpf.VM.run_batch`, in the one form every tier reads.

:func:`prepare_batch` turns each accepted input into a :class:`BatchInput`: one
contiguous byte buffer holding every record back to back, plus ``offsets`` and
``lengths`` as ``array('Q')``.  The generic path runs one record at a time, but a
native tier can take the whole batch in one call (one pointer and two arrays) and
loop in machine code, so per-record Python overhead disappears.

Writes land where :meth:`~pybpf.VM.run` would put them: a single writable buffer
(a ``bytearray``, a writable NumPy array) is used in place, without a copy.  A
sequence of records is gathered into a new buffer before the batch runs and the
writable ones are copied back afterwards (:meth:`BatchInput.write_back`), so a
record object listed twice sees its original bytes both times and its last
record's stores win.  NumPy is never imported: 2-D arrays arrive through the
buffer protocol like any other buffer.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from pybpf.vm import VM

Record: TypeAlias = bytes | bytearray | memoryview
"""One record as gathered: the caller's object, or a flat byte view of it."""

BatchSource: TypeAlias = "BatchInput | ReadableBuffer | Iterable[ReadableBuffer]"
"""What :func:`prepare_batch` accepts: one buffer of records, or an iterable of records."""


@dataclass(frozen=True, eq=False)
class BatchInput:
    """Records laid out back to back in one buffer, as a native tier consumes them.

    Record ``i`` is ``buffer[offsets[i] : offsets[i] + lengths[i]]``.  Fixed-size
    records (one buffer cut by ``record_size``, or the rows of a 2-D array) are
    described by ``stride`` alone, record ``i`` starting at ``i * stride``, so a
    batch of millions of records needs no per-record Python work; ``offsets`` and
    ``lengths`` are then made only if asked for.  ``buffer`` is a 1-D unsigned-byte
    view; it is read-only exactly when the records are mapped read-only.
    """

    buffer: memoryview
    count: int
    stride: int = 0
    """Size of every record when they all have one (and then ``varying`` is None)."""
    varying: tuple[array[int], array[int]] | None = None
    """``(offsets, lengths)`` of records of different sizes."""
    copies: tuple[tuple[int, bytearray | memoryview], ...] = ()
    """(record index, caller's buffer) pairs whose contents :meth:`write_back` restores."""

    def __post_init__(self) -> None:
        if self.varying is not None:
            offsets, lengths = self.varying
            if not len(offsets) == len(lengths) == self.count:
                raise ValueError("a batch needs one offset and one length per record")

    def __len__(self) -> int:
        return self.count

    @cached_property
    def offsets(self) -> array[int]:
        if self.varying is not None:
            return self.varying[0]
        if not self.stride:
            return array("Q", [0]) * self.count
        return array("Q", range(0, self.count * self.stride, self.stride))

    @cached_property
    def lengths(self) -> array[int]:
        if self.varying is not None:
            return self.varying[1]
        return array("Q", [self.stride]) * self.count

    @property
    def writable(self) -> bool:
        """Whether programs may store into their records."""
        return not self.buffer.readonly

    def record(self, index: int) -> memoryview:
        """Record ``index`` as a view into :attr:`buffer` (stores through it land there)."""
        if self.varying is None:
            start = index * self.stride
            return self.buffer[start : start + self.stride]
        offsets, lengths = self.varying
        return self.buffer[offsets[index] : offsets[index] + lengths[index]]

    def write_back(self) -> None:
        """Copy gathered records into the caller's buffers they came from.

        Called after the batch has run, also when it failed, so stores made before
        a fault show as they do with :meth:`~pybpf.VM.run`.
        """
        for index, target in self.copies:
            target[:] = self.record(index)


@runtime_checkable
class BatchRunner(Protocol):
    """A compiled program that runs whole batches itself (a native tier's fast path).

    ``run_batch`` stores each record's r0 in ``out[i]`` (``out`` has one slot per
    record), running each record as :meth:`~pybpf.VM.run` would: same entry
    registers, a fresh zeroed stack, same errors.  On the first failing record it
    raises that record's error after calling :func:`tag_record` on it.
    """

    def run_batch(self, vm: VM, batch: BatchInput, out: array[int]) -> None: ...


def tag_record(error: BaseException, index: int) -> None:
    """Mark ``error`` as raised by batch record ``index``.

    The error keeps its type (a ``MemoryAccessError`` stays one, with its ``pc``);
    it gains a ``record_index`` attribute and a traceback note naming the record.
    """
    error.record_index = index  # type: ignore[attr-defined]
    error.add_note(f"raised while running batch record {index}")


def prepare_batch(
    inputs: BatchSource, record_size: int | None = None, *, writable: bool = True
) -> BatchInput:
    """Normalise batch ``inputs`` into one buffer with record offsets and lengths.

    Accepted forms:

    * a :class:`BatchInput` made earlier, returned as it is (its writability holds);
    * an iterable (list, tuple, ...) of bytes-like records of any lengths;
    * one 1-D bytes-like buffer cut into ``record_size``-byte records;
    * one 2-D C-contiguous buffer, such as a NumPy ``uint8`` array: one record per
      row (``record_size``, if given, must equal the row size in bytes).

    With ``writable`` the buffer is writable: the caller's own when it is writable,
    else a private copy (a ``bytes`` input is never modified); without it the
    buffer is a read-only view and nothing is copied.
    """
    if isinstance(inputs, BatchInput):
        return inputs  # prepared once, run many times (a capture replayed, say)
    if isinstance(inputs, str):
        raise TypeError("batch records must be bytes-like, not str")
    try:
        view = memoryview(inputs)  # type: ignore[arg-type]
    except TypeError:
        if record_size is not None:
            raise TypeError(
                "record_size applies to a single buffer, not to a sequence of records"
            ) from None
        return _gather(inputs, writable)  # type: ignore[arg-type]
    return _split(view, record_size, writable)


def _flat(view: memoryview, what: str) -> memoryview:
    """``view`` as a 1-D unsigned-byte view of the same memory."""
    if not view.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (numpy.ascontiguousarray makes a copy)")
    if view.nbytes == 0:  # memoryview refuses to cast a shape containing 0
        return memoryview(b"" if view.readonly else bytearray())
    return view.cast("B")


def _split(view: memoryview, record_size: int | None, writable: bool) -> BatchInput:
    """Cut one buffer into fixed-size records (its rows, if it is 2-D)."""
    shape = view.shape or ()
    if len(shape) == 2:
        count = shape[0]
        size = shape[1] * view.itemsize
        if record_size is not None and record_size != size:
            raise ValueError(f"record_size {record_size} differs from the row size {size}")
    elif len(shape) == 1:
        if record_size is None:
            raise TypeError("a 1-D buffer needs record_size (or pass a list of records)")
        if record_size < 1:
            raise ValueError("record_size must be at least 1")
        if view.nbytes % record_size:
            raise ValueError(
                f"the buffer's {view.nbytes} bytes are not a whole number of "
                f"{record_size}-byte records"
            )
        count = view.nbytes // record_size
        size = record_size
    else:
        raise ValueError(f"a batch buffer must be 1-D or 2-D, not {len(shape)}-D")
    flat = _flat(view, "a batch buffer")
    if writable and flat.readonly:
        flat = memoryview(bytearray(flat))
    return BatchInput(_mode(flat, writable), count, stride=size)


def _gather(records: Iterable[object], writable: bool) -> BatchInput:
    """Copy a sequence of records into one buffer, remembering which to copy back."""
    parts: list[Record] = []
    for index, record in enumerate(records):
        if isinstance(record, bytes | bytearray):  # the common case, kept cheap
            parts.append(record)
            continue
        try:
            view = memoryview(record)  # type: ignore[arg-type]
        except TypeError as exc:
            raise TypeError(
                f"batch record {index} is {type(record).__name__}, not bytes-like"
            ) from exc
        parts.append(_flat(view, f"batch record {index}"))
    lengths = array("Q", map(len, parts))  # len() of a flat byte view is its size
    offsets = array("Q", accumulate(lengths[:-1], initial=0)) if parts else array("Q")
    copies = tuple(
        (index, part)
        for index, part in enumerate(parts)
        if writable and not isinstance(part, bytes) and not _readonly(part)
    )
    buffer = memoryview(bytearray().join(parts))
    return BatchInput(
        _mode(buffer, writable), len(lengths), varying=(offsets, lengths), copies=copies
    )


def _readonly(part: bytearray | memoryview) -> bool:
    return isinstance(part, memoryview) and part.readonly


def _mode(buffer: memoryview, writable: bool) -> memoryview:
    return buffer if writable else buffer.toreadonly()
