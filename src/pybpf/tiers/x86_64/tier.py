"""The x86-64 tier: compiled programs entered through ctypes, with Python around the edges.

Python fills the run context (region table, registers, budget), calls the native
entry, and turns the status it returns into the same result or error the
interpreter gives: memory traps are re-checked against the address space so the
error is the interpreter's own, budget exhaustion hands the run to the
interpreter at the block that would overrun, and helper exceptions are raised
here, after the native frames have returned.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from array import array
from functools import cached_property
from typing import TYPE_CHECKING

from pybpf.batch import BatchInput, tag_record
from pybpf.errors import (
    BpfError,
    CallDepthExceededError,
    MemoryAccessError,
    TrapKind,
)
from pybpf.isa.semantics import MASK64
from pybpf.program import Program
from pybpf.runtime.helpers import invoke_helper
from pybpf.runtime.machine import Frame, Machine, MachineConfig
from pybpf.runtime.memory import INPUT_BASE, STACK_BASE, MemoryRegion
from pybpf.tiers.interp import CompiledInterpreter, check_supported
from pybpf.tiers.x86_64 import layout
from pybpf.tiers.x86_64.analysis import access_kinds, stack_footprint
from pybpf.tiers.x86_64.compiler import NativeCode, compile_program
from pybpf.tiers.x86_64.executable import ExecutableMemory, unavailable_reason
from pybpf.tiers.x86_64.layout import Status
from pybpf.verifier import frames

if TYPE_CHECKING:
    from pybpf.vm import VM

_ENTRY_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64)

_STATE = struct.Struct("<20Q")
"""The words from REGS to PACKET_LENGTH: registers, meter, frame bottom, trap data, stack,
packet."""
_CALL_LIMITS = struct.Struct("<2Q")
"""FP_LIMIT and SHADOW_DELTA."""
_HELPER_CALL = struct.Struct("<6Q")
"""The helper number and its five arguments."""
_FRAME = struct.Struct("<5Q")
_BATCH = struct.Struct("<10Q")
"""BATCH_HOST to BATCH_STRIDE: records, offsets, lengths, results, count, index, budget,
stack top and bottom, record size."""
_WORD = struct.Struct("<Q")
_LOWEST_WORD = layout.table_field(layout.LOWEST, 0) // 8
_HOST_WORD = layout.table_field(layout.HOST, 0) // 8
_COUNT_WORDS = tuple(
    (
        layout.table_field(layout.COUNT[size, False], 0) // 8,
        layout.table_field(layout.COUNT[size, True], 0) // 8,
        size,
    )
    for size in layout.ACCESS_SIZES
)
"""Word index of each size's read and write count arrays; a slot's field is ``word + slot``."""
_SHIFT = layout.SLOT_SHIFT
_OK = Status.OK
_R0_WORD = layout.REGS // 8
_BUDGET_LEFT_WORD = layout.BUDGET_LEFT // 8
_STACK_SLOT = STACK_BASE >> layout.SLOT_SHIFT
_STACK_LOWEST_WORD = _LOWEST_WORD + _STACK_SLOT
_STACK_BIT = 1 << _STACK_SLOT
_NOT_SEEN: tuple[MemoryRegion | None, int, object, int] = (None, -1, None, -1)
_INPUT_SLOT = INPUT_BASE >> layout.SLOT_SHIFT
_INPUT_BIT = 1 << _INPUT_SLOT
_WRITABLE_WORD = layout.BATCH_WRITABLE // 8
_NATIVE_ROW = (-2, -2, False, 0)
"""The row Python records for the input slot while native code keeps it
(:meth:`CompiledNative._input_row`): unlike any real row, so leaving that mode rewrites
the slot."""


_Pins = list[ctypes.c_char]
"""Exports of the buffers a run uses; their host addresses stay valid while it lives."""
_export = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def _pin(region: MemoryRegion, pins: _Pins) -> int:
    """The host address of the region's buffer (0 if empty), exported into ``pins``."""
    buffer = region.buffer
    if not len(buffer):
        return 0
    if isinstance(buffer, memoryview) and buffer.readonly:
        # read-only views cannot be pinned; a copy serves, since nothing writes it
        region.buffer = buffer = bytearray(buffer)
    view = _export(buffer)
    pins.append(view)
    return _addressof(view)


class CompiledNative:
    """A program as machine code, plus the interpreter for hand-overs and fallbacks."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        check_supported(program)
        self.program = program
        self.config = config
        self.native: NativeCode = compile_program(program, config)
        self._code = ExecutableMemory(self.native.code)
        self._entry = _ENTRY_TYPE(self._code.address + self.native.entry)
        self._input_entry = _ENTRY_TYPE(self._code.address + self.native.input_entry)
        self._native_input = False
        """Whether the last :meth:`_fill_context` left the input row to native code
        (:attr:`NativeCode.input_entry`)."""
        self._batch_entry = _ENTRY_TYPE(self._code.address + self.native.batch_entry)
        self._count_words = tuple(
            (layout.table_field(layout.COUNT[size, write], 0) // 8, size, write)
            for size, write in access_kinds(program)
        )
        """Word index of the count array of each kind of access the program has: the
        only counts its code reads, so the only ones a row change writes."""
        self._proven_top = frames.stack_top(config) if self.native.frame_proofs else -1
        """The stack top the code's frame proofs assume (-1: it has none)."""
        # the context is a bytearray pinned for the object's lifetime: struct writes it fast
        self._context = bytearray(layout.context_size(config.max_call_depth, config.stack_size))
        self._context_pin = ctypes.c_char.from_buffer(self._context)
        self._context_address = ctypes.addressof(self._context_pin)
        self._words = memoryview(self._context).cast("Q")
        """The context as 64-bit words, for single-field reads and writes."""
        self._callback = _CALLBACK_TYPE(self._on_helper)
        callback_address = ctypes.cast(self._callback, ctypes.c_void_p).value or 0
        self._words[layout.CALLBACK // 8] = callback_address
        self._mapped = (1 << layout.SLOT_COUNT) - 1
        """Bit ``slot`` is set for every slot whose row may grant access."""
        self._rows: dict[int, tuple[int, int, bool, int]] = {}
        """Slot -> what its row holds now: lowest address, end, writable, and the id of
        the owned buffer its delta points into (0 for a buffer pinned per run)."""
        self._held: dict[int, tuple[_Pins, int]] = {}
        """Slot -> export and host address of the owned buffer its row points into:
        the export keeps the buffer (so its id) alive and its address valid."""
        self._pins: _Pins = []
        self._stack_seen: tuple[MemoryRegion | None, int, object, int] = _NOT_SEEN
        """(stack region, its lowest address, its buffer, their host address) as the
        last run wrote the stack slot's row: a run with the same needs no row work."""
        self._limits: tuple[int, MachineConfig | None] = (-1, None)
        """The stack top and config the context's STACK_TOP_HOST, FP_LIMIT and
        SHADOW_DELTA were written for (the same for every run on one stack)."""
        self._machine: Machine | None = None
        self._batch: BatchInput | None = None
        self._pending: BaseException | None = None
        self._lock = threading.RLock()
        self._running = False

    @cached_property
    def _stack_zeroing(self) -> tuple[int, int]:
        """``ZERO_START`` and ``ZERO_WORDS``: the stack words a batch record can touch,
        which each record zeroes (found when a batch first runs, not at compile time)."""
        config = self.config
        footprint = stack_footprint(self.program, config.stack_size)
        if footprint is None:
            return (
                -config.stack_size * config.max_call_depth,
                config.stack_size * config.max_call_depth // 8,
            )
        low, high = footprint
        start = low & ~7
        return start, (high - start + 7) // 8

    @cached_property
    def _reference(self) -> CompiledInterpreter:
        """The reference tier, built on first need: budget hand-overs and fallbacks."""
        return CompiledInterpreter(self.program)

    def listing(self) -> str:
        """The machine code, interleaved with the eBPF instructions it implements."""
        from pybpf.tiers.x86_64.listing import native_listing

        native = compile_program(self.program, self.config, every_offset=True)
        if native.code != self.native.code:  # compiling is deterministic
            raise RuntimeError("recompiling for the listing gave other code")  # a pybpf bug
        return native_listing(self.program, native, self._code.address)

    # -- helper callback -----------------------------------------------------------

    def _on_helper(self) -> int:
        """Called from machine code; never lets an exception escape into it."""
        context, words = self._context, self._words
        machine = self._machine
        try:
            if machine is None:
                raise RuntimeError("helper callback outside a run")
            machine.stack.vm_start = words[_STACK_LOWEST_WORD]
            if self._batch is not None:
                self._show_record(machine, words[layout.BATCH_INDEX // 8])
            number, *args = _HELPER_CALL.unpack_from(context, layout.HELPER_NUMBER)
            pc = words[layout.TRAP_PC // 8]
            result = invoke_helper(machine, number, pc, *args)
            words[layout.HELPER_RESULT // 8] = result
            return 1 if machine.stop_value is not None else 0
        except BaseException as exc:  # re-raised by run() once the native frames are gone
            self._pending = exc
            return 2

    # -- running -------------------------------------------------------------------

    def run(self, m: Machine) -> int:
        lock = self._lock
        lock.acquire()
        try:
            if self._running:  # a helper ran this program again: use the interpreter
                return self._reference.run(m)
            self._running = True
            pins = self._pins
            try:
                budget = self._fill_context(m, pins)
                if budget < 0:
                    return self._reference.run(m)
                self._machine = m
                entry = self._input_entry if self._native_input else self._entry
                status = entry(self._context_address)
                if status == _OK:
                    words = self._words
                    m.regs[0] = r0 = words[_R0_WORD]
                    m.instructions = budget - words[_BUDGET_LEFT_WORD]
                    return r0
                # a trap or a stop can leave the stack slot's bounds at an inner frame
                self._forget_table()
                return self._finish(m, status)
            finally:
                pins.clear()
                self._running = False
                self._machine = self._pending = None
        finally:
            lock.release()

    def _fill_context(self, m: Machine, pins: _Pins) -> int:
        """Write the region table, registers and limits; returns the budget, or -1 if
        the regions do not fit the table.

        A row is rewritten only where it differs from what the table holds.  Buffers
        pybpf owns (:attr:`MemoryRegion.owned`) stay pinned while a row points into
        them; every other buffer is pinned (into ``pins``) for this run only, and
        its row's host delta is written every run.
        """
        words, rows = self._words, self._rows
        stack, packet = m.stack, m.packet
        if self._proven_top >= 0 and stack.vm_end != self._proven_top:
            return -1  # the code's frame proofs assume the stack Machine.create lays out
        stack_host = packet_host = -1
        mapped = 0
        self._native_input = False
        seen = self._stack_seen
        for region in m.memory.regions:
            if region is packet and not mapped & _INPUT_BIT:
                packet_host = self._input_row(region, pins)
                if packet_host >= 0:
                    mapped |= _INPUT_BIT
                    continue
            elif (
                region is seen[0]
                and region.vm_start == seen[1]
                and region.buffer is seen[2]
                and region.writable
                and not mapped & _STACK_BIT
            ):  # the stack as the last run left its row (its buffer pinned, held)
                stack_host = seen[3]
                mapped |= _STACK_BIT
                continue
            base = region.base
            slot = base >> _SHIFT
            bit = 1 << slot
            buffer = region.buffer
            end = base + len(buffer)
            owner = id(buffer) if region.owned else 0
            row = (region.vm_start, end, region.writable, owner)
            held = rows.get(slot)
            if mapped & bit or held != row and not self._write_row(slot, region, row, held):
                # two regions in one slot, or one too large for its slot: the table
                # cannot describe them (rows written so far are closed next time)
                self._mapped |= mapped
                return -1
            mapped |= bit
            if owner:
                host = self._held[slot][1]
            else:
                host = _pin(region, pins)  # (the usual input takes _input_row instead)
                words[_HOST_WORD + slot] = host + region.vm_start - base
            if region is stack:
                stack_host = host
                if owner and slot == _STACK_SLOT and region.writable:
                    self._stack_seen = (stack, stack.vm_start, buffer, host)
            elif region is packet:
                packet_host = host
        if mapped != self._mapped:
            self._unmap_others(mapped)
        if stack_host < 0:
            stack_host = _pin(stack, pins)
        if packet is not None and packet_host < 0:
            packet_host = _pin(packet, pins)
        regs = m.regs
        config = m.config
        budget = config.budget
        _STATE.pack_into(
            self._context,
            layout.REGS,
            regs[0],
            regs[1],
            regs[2],
            regs[3],
            regs[4],
            regs[5],
            regs[6],
            regs[7],
            regs[8],
            regs[9],
            regs[10],
            budget - m.instructions,
            (stack_host - stack.base + config.stack_size) & MASK64,  # frame bottom
            0,  # saved rsp
            0,  # trap pc
            0,  # fault address
            0,  # fault info
            (stack_host - stack.base) & MASK64,
            0 if packet is None else packet_host,
            0 if packet is None else len(packet.buffer),
        )
        top = stack_host + len(stack.buffer)
        if top != self._limits[0] or config is not self._limits[1]:  # (a new stack)
            self._limits = (top, config)
            self._words[layout.STACK_TOP_HOST // 8] = top
            shadow_top = self._context_address + layout.FRAMES
            shadow_top += config.stack_size * config.max_call_depth
            _CALL_LIMITS.pack_into(
                self._context,
                layout.FP_LIMIT,
                top - (config.max_call_depth - 1) * config.stack_size,
                (shadow_top - top - config.stack_size) & MASK64,
            )
        return budget

    def _input_row(self, packet: MemoryRegion, pins: _Pins) -> int:
        """Leave the input slot's row to native code, which points it at
        ``PACKET_HOST`` and ``PACKET_LENGTH``, when the packet is the usual input: a
        buffer pybpf does not own, at ``INPUT_BASE``, that fits the slot.  Pins it,
        writes its writability and returns its host address; -1 (nothing done) for
        any other packet."""
        buffer = packet.buffer
        if (
            packet.owned
            or packet.base != INPUT_BASE
            or packet.vm_start != INPUT_BASE
            or len(buffer) > 1 << _SHIFT
        ):
            return -1
        words = self._words
        if self._rows.get(_INPUT_SLOT) is not _NATIVE_ROW:
            if _INPUT_SLOT in self._held:
                del self._held[_INPUT_SLOT]
            words[_LOWEST_WORD + _INPUT_SLOT] = INPUT_BASE
            self._rows[_INPUT_SLOT] = _NATIVE_ROW
        if type(buffer) is bytearray and len(buffer):  # _pin's work, inline: once a run
            view = _export(buffer)
            pins.append(view)
            host = _addressof(view)
        else:
            host = _pin(packet, pins)
        words[_WRITABLE_WORD] = MASK64 if packet.writable else 0
        self._native_input = True
        return host

    def _unmap_others(self, mapped: int) -> None:
        """Close every slot the last run mapped and this one (bits of ``mapped``) does not."""
        words = self._words
        for slot in range(layout.SLOT_COUNT):
            if self._mapped >> slot & 1 and not mapped >> slot & 1:
                for read, write, _size in _COUNT_WORDS:
                    words[read + slot] = words[write + slot] = 0
                self._rows.pop(slot, None)
                self._held.pop(slot, None)
                if slot == _STACK_SLOT:
                    self._stack_seen = _NOT_SEEN
        self._mapped = mapped

    def _write_row(
        self,
        slot: int,
        region: MemoryRegion,
        row: tuple[int, int, bool, int],
        old: tuple[int, int, bool, int] | None,
    ) -> bool:
        """Make a slot's row say ``row`` where it says ``old``, writing only the words
        that change: the lowest address, the counts of valid starts of each access
        size (write counts 0 when read-only), and for an owned buffer the lowest
        address's host address, pinning the buffer while the row points into it.
        False, writing nothing, if the region does not fit in the slot (every row
        held fits)."""
        start, end, writable, owner = row
        if end > (slot + 1) << _SHIFT:
            return False
        if slot == _STACK_SLOT:
            self._stack_seen = _NOT_SEEN  # (set again once the stack's row is written)
        words = self._words
        if old is None or old[:3] != row[:3]:
            words[_LOWEST_WORD + slot] = start
            span = end - start
            for word, size, write in self._count_words:
                if writable or not write:
                    words[word + slot] = span - size + 1 if span >= size else 0
                else:
                    words[word + slot] = 0
        if owner:
            if old is None or old[3] != owner:
                pins: _Pins = []
                self._held[slot] = (pins, _pin(region, pins))
            # the buffer cannot resize while pinned, so its end fixes its base
            words[_HOST_WORD + slot] = self._held[slot][1] + start - region.base
        elif old is not None and old[3]:
            del self._held[slot]
        self._rows[slot] = row
        return True

    def _forget_table(self) -> None:
        """Native code changed rows (a batch's input, an inner frame's stack bounds):
        rewrite every row's words on the next run.  Each row is marked stale, not
        dropped, so a buffer pinned for it stays pinned and is not pinned again."""
        rows = self._rows
        for slot, row in rows.items():
            rows[slot] = (-1, -1, False, row[3])
        self._stack_seen = _NOT_SEEN

    # -- batches -------------------------------------------------------------------

    def run_batch(self, vm: VM, batch: BatchInput, out: array[int]) -> None:
        """Run every record in one native loop; Python steps in only for exceptions.

        A record that traps, runs out of budget or needs a Python decision leaves the
        loop; it is finished here exactly as a single run would be (the interpreter
        takes over budget overruns), and the loop resumes with the next record.
        """
        if not len(batch):
            return
        with self._lock:
            if self._running:
                raise BpfError("a helper cannot start a batch of the program it runs in")
            self._running = True
            try:
                self._run_batch(vm, batch, out)
            finally:
                self._running = False
                self._machine = None
                self._batch = None
                self._pending = None

    def _run_batch(self, vm: VM, batch: BatchInput, out: array[int]) -> None:
        borrowed = vm.borrow_machine(batch.record(0), None, batch.writable)
        m = borrowed or vm.make_machine(batch.record(0), mem_writable=batch.writable)
        records = MemoryRegion("batch", INPUT_BASE, batch.buffer, batch.writable)
        pins: _Pins = []
        try:
            if self._fill_context(m, pins) < 0:
                self._run_records_one_by_one(vm, batch, out, 0)
                return
            top = self._words[layout.STACK_TOP_HOST // 8]  # the stack is pinned by now
            fixed = batch.varying is None and batch.stride > 0
            _BATCH.pack_into(
                self._context,
                layout.BATCH_HOST,
                _pin(records, pins),
                0 if fixed else batch.offsets.buffer_info()[0],
                0 if fixed else batch.lengths.buffer_info()[0],
                out.buffer_info()[0],
                len(batch),
                0,
                m.config.budget,
                top,
                top - len(m.stack.buffer),
                batch.stride if fixed else 0,
            )
            self._words[layout.BATCH_WRITABLE // 8] = MASK64 if batch.writable else 0
            zero_start, zero_words = self._stack_zeroing
            self._words[layout.ZERO_START // 8] = zero_start & MASK64
            self._words[layout.ZERO_WORDS // 8] = zero_words
            self._machine, self._batch = m, batch
            while True:
                status = self._batch_entry(self._context_address)
                index = self._words[layout.BATCH_INDEX // 8]
                if status == Status.OK:
                    return
                self._show_record(m, index)
                try:
                    out[index] = self._finish(m, status)
                except Exception as exc:
                    tag_record(exc, index)
                    raise
                # the next record starts from a clean machine, as a new run would
                self._reset_machine(m)
                self._words[layout.BATCH_INDEX // 8] = index + 1
        finally:
            pins.clear()
            self._forget_table()
            if borrowed is not None:
                vm.return_machine(borrowed)

    def _run_records_one_by_one(
        self, vm: VM, batch: BatchInput, out: array[int], start: int
    ) -> None:
        for index in range(start, len(batch)):
            try:
                out[index] = self._reference.run(
                    vm.make_machine(batch.record(index), mem_writable=batch.writable)
                )
            except Exception as exc:
                tag_record(exc, index)
                raise

    def _show_record(self, m: Machine, index: int) -> None:
        """Point the machine's input region at batch record ``index`` (for Python code)."""
        batch = self._batch
        packet = m.packet
        if batch is None or packet is None:
            return
        packet.buffer = batch.record(index)

    def _reset_machine(self, m: Machine) -> None:
        m.frames.clear()
        m.stop_value = None
        m.instructions = 0
        stack = m.stack
        stack.vm_start = stack.vm_end - m.config.stack_size
        # native code may have left the row at an inner frame: write all of it
        row = (stack.vm_start, stack.vm_end, stack.writable, id(stack.buffer))
        self._write_row(_STACK_SLOT, stack, row, None)

    def _finish(self, m: Machine, status: int) -> int:
        state = _STATE.unpack_from(self._context, layout.REGS)
        regs = m.regs
        regs[:] = state[:11]
        left, _frame_lo, _rsp, pc, address, info = state[11:17]
        config = m.config
        executed = config.budget - left
        m.instructions = executed
        m.stack.vm_start = regs[10] - config.stack_size  # the table may lag in leaf calls
        if status == Status.OK:
            return regs[0]
        if status == Status.PACKET_MISS:
            regs[0] = 0
            return 0
        if status == Status.CALLBACK:
            pending = self._pending
            if pending is not None:
                raise pending
            regs[0] = (m.stop_value or 0) & MASK64
            return regs[0]
        if status == Status.OUT_OF_BUDGET:
            frames: list[Frame] = []
            depth = (m.stack.vm_end - regs[10]) // config.stack_size
            for level in range(depth):
                offset = layout.shadow_frame(level, config.max_call_depth, config.stack_size)
                ret, *kept = _FRAME.unpack_from(self._context, offset)
                # a register the callee (with all it calls) never writes is still the caller's
                saved = list(regs[6:10])
                for reg in self.native.saved_registers[ret]:
                    saved[reg - 6] = kept[reg - 6]
                frames.append(Frame(ret, (saved[0], saved[1], saved[2], saved[3])))
            resume = self._words[layout.RESUME_PC // 8]
            return self._reference.resume(m, resume, executed, list(regs), frames)
        if status == TrapKind.MEMORY_ACCESS:
            pc, size, write = self.native.memory_sites[info - self._code.address]
            m.memory.translate(address, size, write, pc)  # raises the interpreter's error
            raise MemoryAccessError(pc, address, size, write)
        if status == TrapKind.CALL_DEPTH_EXCEEDED:
            raise CallDepthExceededError(pc, m.config.max_call_depth)
        raise RuntimeError(f"native code returned unknown status {status}")  # a pybpf bug


class X86Tier:
    """Native x86-64 code; available on x86-64 Linux hosts."""

    name = "x86_64"

    def unavailable_reason(self) -> str | None:
        return _cached_reason()

    def compile(self, program: Program, config: MachineConfig) -> CompiledNative:
        return CompiledNative(program, config)


_REASON: list[str | None] = []


def _cached_reason() -> str | None:
    if not _REASON:
        _REASON.append(unavailable_reason())
    return _REASON[0]
