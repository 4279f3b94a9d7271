"""The Python API for running programs: :class:`VM` and its fixed-metadata flavour.

The rbpf VM flavours map onto one class:

* no data: ``vm.run()`` starts with r1 = 0;
* raw memory: ``vm.run(mem)`` maps ``mem`` and starts with r1 = its VM address and
  r2 = its length, as uBPF does;
* metadata buffer: ``vm.run(mem, mbuff=meta)`` maps both and starts with r1 = the
  metadata buffer's address (r2 = its length); the caller fills ``meta`` using
  :attr:`VM.input_address`;
* fixed metadata buffer: :class:`FixedMbuffVM` owns the metadata buffer and writes
  the input's start and end addresses into it before every run.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast, overload

from pybpf.batch import BatchRunner, BatchSource, prepare_batch, tag_record
from pybpf.errors import BpfError, TierUnavailableError
from pybpf.program import Program
from pybpf.runtime.helpers import HelperFunction, HelperRegistry, default_helpers
from pybpf.runtime.machine import (
    DEFAULT_BUDGET,
    DEFAULT_MAX_CALL_DEPTH,
    DEFAULT_STACK_SIZE,
    Machine,
    MachineConfig,
)
from pybpf.runtime.memory import (
    ADDRESS_SPACE_END,
    EXTRA_BASE,
    INPUT_BASE,
    MBUFF_BASE,
    REGION_ALIGN,
    STACK_BASE,
    Buffer,
    MemoryRegion,
)
from pybpf.tiers import CompiledProgram, get_tier
from pybpf.tiers.interp import CompiledInterpreter, Observer
from pybpf.verifier.structural import check_structure

Verifier = Callable[[Program], None]

_RESERVED_RANGES: dict[str, tuple[int, int]] = {
    "the NULL page": (0, 0x1000),
    "the stack": (STACK_BASE, STACK_BASE + REGION_ALIGN),
    "the input memory": (INPUT_BASE, INPUT_BASE + REGION_ALIGN),
    "the metadata buffer": (MBUFF_BASE, MBUFF_BASE + REGION_ALIGN),
}
"""VM address ranges that user regions may not take."""
BytesLike = bytes | bytearray | memoryview
_NOTHING = bytearray()
"""The buffer of the VM's input regions between runs: no caller's buffer stays referenced."""


@dataclass(frozen=True)
class RunResult:
    """What one run produced."""

    r0: int
    instructions: int
    """Instructions executed (a 64-bit immediate load counts once)."""
    trace: tuple[str, ...] = ()
    """Lines of trace output (``bpf_trace_printk``) in the order they were produced."""


def _result(r0: int, machine: Machine) -> RunResult:
    return RunResult(r0, machine.instructions, tuple(machine.trace_lines))


def _as_buffer(data: object, writable: bool) -> Buffer:
    """A host buffer for guest memory: the caller's own if writable, else a copy."""
    if isinstance(data, bytearray):
        return data
    if type(data) is bytes:
        return bytearray(data) if writable else memoryview(data)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(f"guest memory must be bytes-like, not {type(data).__name__}") from exc
    if not view.c_contiguous:
        raise ValueError("guest memory must be a contiguous buffer")
    view = view.cast("B")
    if view.readonly:
        return bytearray(view) if writable else view
    return view


class VM:
    """A loaded program, its helpers and memory regions, ready to run on inputs.

    Loading decodes (if given bytes), runs the structural checks and the optional
    ``verifier`` hook, and compiles for the chosen tier; every failure raises from
    :class:`~pybpf.errors.BpfError`.
    """

    def __init__(
        self,
        program: Program | BytesLike,
        *,
        tier: str = "interp",
        helpers: HelperRegistry | None = None,
        budget: int = DEFAULT_BUDGET,
        stack_size: int = DEFAULT_STACK_SIZE,
        max_call_depth: int = DEFAULT_MAX_CALL_DEPTH,
        verifier: Verifier | None = None,
        seed: int = 0,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.config = MachineConfig(
            budget=budget, stack_size=stack_size, max_call_depth=max_call_depth, seed=seed
        )
        self.helpers = helpers if helpers is not None else default_helpers()
        self.rng = random.Random(seed)
        """The pseudo-random source of ``bpf_get_prandom_u32``, kept across runs."""
        self.trace_sink = trace
        self._tier = get_tier(tier)
        self._verifier = verifier
        self._regions: list[MemoryRegion] = []
        self._program: Program
        self._compiled: CompiledProgram
        self._machine = Machine.create(self.config, self.helpers, [])
        """The machine runs reuse."""
        self._spare = [self._machine]
        """Holds :attr:`_machine` while no run uses it; a run that finds it empty (a
        helper runs the VM again, or another thread does) builds its own machine."""
        self._stack_reach = self._machine.stack_top(0)
        """The top of that machine's stack that a run of the program can write."""
        self._input = MemoryRegion("mem", INPUT_BASE, _NOTHING)
        self._mbuff = MemoryRegion("mbuff", MBUFF_BASE, _NOTHING)
        self._plain_execute = type(self).execute is VM.execute
        self.set_program(program)

    # -- program ---------------------------------------------------------------

    @property
    def program(self) -> Program:
        return self._program

    @property
    def tier(self) -> str:
        return self._tier.name

    def listing(self) -> str:
        """What the tier generated for the program (``pybpf disasm --tier``)."""
        return self._compiled.listing()

    def set_program(self, program: Program | BytesLike) -> None:
        """Replace the program; it is checked and compiled before it replaces the old one."""
        if not isinstance(program, Program):
            program = Program.from_bytes(program)
        check_structure(program)
        if self._verifier is not None:
            self._verifier(program)
        self._compiled = self._tier.compile(program, self.config)
        self._program = program
        # without local calls (a call to pc 0 recurses without adding a function) only
        # the main frame can be reached
        frames = self.config.max_call_depth if program.local_call_targets else 1
        self._stack_reach = self._machine.stack_top(frames * self.config.stack_size)

    def set_verifier(self, verifier: Verifier | None) -> None:
        """Install a verifier hook (run after the structural checks) and apply it now."""
        if verifier is not None:
            verifier(self._program)
        self._verifier = verifier

    # -- helpers and regions ---------------------------------------------------

    def register_helper(
        self, number: int, function: HelperFunction, name: str | None = None
    ) -> None:
        self.helpers.register(number, function, name)

    def add_region(
        self,
        name: str,
        data: BytesLike,
        *,
        vm_start: int | None = None,
        writable: bool = True,
    ) -> MemoryRegion:
        """Map ``data`` into every run at ``vm_start`` (by default the next free slot).

        A writable bytearray or memoryview is shared: the program's stores show in it.
        """
        if any(region.name == name for region in self._regions):
            raise ValueError(f"a region named {name!r} is already mapped")
        start = vm_start if vm_start is not None else self._next_free_slot()
        region = MemoryRegion(name, start, _as_buffer(data, writable), writable)
        for other_name, (low, high) in _RESERVED_RANGES.items():
            if region.base < high and low < region.vm_end:
                raise ValueError(f"region {name!r} overlaps the range reserved for {other_name}")
        for other in self._regions:
            if region.base < other.vm_end and other.base < region.vm_end:
                raise ValueError(f"region {name!r} overlaps region {other.name!r}")
        self._regions.append(region)
        return region

    def remove_region(self, name: str) -> None:
        self._regions = [region for region in self._regions if region.name != name]

    @property
    def regions(self) -> tuple[MemoryRegion, ...]:
        return tuple(self._regions)

    def _next_free_slot(self) -> int:
        start = EXTRA_BASE
        while any(r.base < start + REGION_ALIGN and start < r.vm_end for r in self._regions):
            start += REGION_ALIGN
        if start >= ADDRESS_SPACE_END:
            raise ValueError("no free region slot left in the 32-bit address space")
        return start

    input_address = INPUT_BASE
    """VM address at which the input memory (``mem``) is mapped."""

    mbuff_address = MBUFF_BASE
    """VM address at which the metadata buffer (``mbuff``) is mapped."""

    # -- running ---------------------------------------------------------------

    def make_machine(
        self,
        mem: BytesLike | None = None,
        *,
        mbuff: BytesLike | None = None,
        mem_writable: bool = True,
    ) -> Machine:
        """A machine ready to run: regions mapped, a zeroed stack, entry registers set."""
        regions = list(self._regions)
        packet = None
        entry = {1: 0}
        if mem is not None:
            packet = MemoryRegion("mem", INPUT_BASE, _as_buffer(mem, mem_writable), mem_writable)
            regions.append(packet)
            entry = {1: packet.base, 2: len(packet)}
        if mbuff is not None:
            meta = MemoryRegion("mbuff", MBUFF_BASE, _as_buffer(mbuff, True))
            regions.append(meta)
            entry = {1: meta.base, 2: len(meta)}
        machine = Machine.create(
            self.config, self.helpers, regions, packet, self.trace_sink, self.rng
        )
        for register, value in entry.items():
            machine.regs[register] = value
        return machine

    def execute(
        self,
        mem: BytesLike | None = None,
        *,
        mbuff: BytesLike | None = None,
        mem_writable: bool = True,
        observer: Observer | None = None,
    ) -> RunResult:
        """Run once and report r0, the instruction count and trace output.

        ``mem`` is mapped read-write unless ``mem_writable`` is false; a bytearray
        (or writable buffer) is used in place, so stores show in it afterwards.
        ``observer(pc, machine)`` is called before every instruction (interpreter only).
        """
        return self._execute(mem, mbuff, mem_writable, observer, True)

    def run(
        self,
        mem: BytesLike | None = None,
        *,
        mbuff: BytesLike | None = None,
        mem_writable: bool = True,
    ) -> int:
        """Run once and return r0."""
        if not self._plain_execute:  # a subclass's execute does per-run work
            return self.execute(mem, mbuff=mbuff, mem_writable=mem_writable).r0
        return self._execute(mem, mbuff, mem_writable, None, False)

    @overload
    def _execute(
        self,
        mem: BytesLike | None,
        mbuff: BytesLike | None,
        mem_writable: bool,
        observer: Observer | None,
        report: Literal[True],
    ) -> RunResult: ...

    @overload
    def _execute(
        self,
        mem: BytesLike | None,
        mbuff: BytesLike | None,
        mem_writable: bool,
        observer: Observer | None,
        report: Literal[False],
    ) -> int: ...

    def _execute(
        self,
        mem: BytesLike | None,
        mbuff: BytesLike | None,
        mem_writable: bool,
        observer: Observer | None,
        report: bool,
    ) -> RunResult | int:
        """One run, on the VM's own machine unless it is taken (a helper runs the VM
        again, or another thread does); a :class:`RunResult` if ``report``, else r0."""
        machine = self.borrow_machine(mem, mbuff, mem_writable)
        if machine is None:
            return self._execute_apart(mem, mbuff, mem_writable, observer, report)
        try:
            if observer is None:
                r0 = self._compiled.run(machine)
            else:
                r0 = self._start(machine, observer)
            return _result(r0, machine) if report else r0
        finally:
            self.return_machine(machine)

    def borrow_machine(
        self, mem: BytesLike | None, mbuff: BytesLike | None = None, mem_writable: bool = True
    ) -> Machine | None:
        """The VM's own machine, set up as :meth:`make_machine` sets up a new one, for
        one run (or one batch) until :meth:`return_machine`; None when it is taken (a
        helper runs the VM again, or another thread does) or an input is too large for
        its slot (the general path decides what that means)."""
        spare = self._spare
        try:
            machine = spare.pop()  # atomic: only one run at a time gets it
        except IndexError:
            return None
        r1 = r2 = 0
        packet = None
        if mem is not None:
            packet = self._input
            buffer = mem if type(mem) is bytearray else _as_buffer(mem, mem_writable)
            packet.buffer = buffer
            packet.writable = mem_writable
            r1, r2 = INPUT_BASE, len(buffer)
            regions = [machine.stack, *self._regions, packet]
        else:
            regions = [machine.stack, *self._regions]
        fits = r2 <= REGION_ALIGN
        if mbuff is not None:
            self._mbuff.buffer = buffer = _as_buffer(mbuff, True)
            r1, r2 = MBUFF_BASE, len(buffer)
            fits = fits and r2 <= REGION_ALIGN
            regions.append(self._mbuff)
        if not fits:
            self.return_machine(machine)
            return None
        machine.helpers = self.helpers
        machine.trace_sink = self.trace_sink
        machine.rng = self.rng
        machine.restart(regions, packet, r1, r2, self._stack_reach)
        return machine

    def return_machine(self, machine: Machine) -> None:
        """Give back what :meth:`borrow_machine` lent."""
        self._input.buffer = self._mbuff.buffer = _NOTHING
        self._spare.append(machine)

    def _execute_apart(
        self,
        mem: BytesLike | None,
        mbuff: BytesLike | None,
        mem_writable: bool,
        observer: Observer | None,
        report: bool,
    ) -> RunResult | int:
        """One run on a machine of its own."""
        machine = self.make_machine(mem, mbuff=mbuff, mem_writable=mem_writable)
        r0 = self._start(machine, observer)
        return _result(r0, machine) if report else r0

    def _start(self, machine: Machine, observer: Observer | None) -> int:
        if observer is None:
            return self._compiled.run(machine)
        if isinstance(self._compiled, CompiledInterpreter):
            return self._compiled.run(machine, observer)
        raise TierUnavailableError("instruction tracing needs the interpreter tier")

    # -- batches (pybpf.batch) ---------------------------------------------------

    def run_batch(
        self,
        inputs: BatchSource,
        *,
        record_size: int | None = None,
        mem_writable: bool = True,
    ) -> array[int]:
        """Run once per input record and return every r0, in order, as ``array('Q')``.

        ``inputs`` is a list or tuple of bytes-like records, one bytes-like buffer
        cut into ``record_size``-byte records, or a 2-D C-contiguous array (NumPy
        ``uint8``: one record per row); see :func:`pybpf.batch.prepare_batch`.
        ``numpy.frombuffer(result, dtype=numpy.uint64)`` views the result without
        a copy.  Each record runs as ``run(record, mem_writable=mem_writable)``
        would, and stores into writable records show in the caller's buffers.
        The first failing record raises its own error, with ``record_index`` set
        (:func:`pybpf.batch.tag_record`).  A tier whose compiled program has a
        ``run_batch`` method (:class:`pybpf.batch.BatchRunner`) runs the whole
        batch itself, unless a subclass overrides :meth:`execute` (per-run setup
        such as :class:`FixedMbuffVM`'s must not be skipped).
        """
        batch = prepare_batch(inputs, record_size, writable=mem_writable)
        out = array("Q", [0]) * len(batch)
        compiled = self._compiled
        try:
            # what isinstance(compiled, BatchRunner) asks, without the microseconds a
            # runtime-checkable protocol's check costs
            if hasattr(compiled, "run_batch") and type(self).execute is VM.execute:
                cast(BatchRunner, compiled).run_batch(self, batch, out)
                return out
            for index in range(len(batch)):
                try:
                    out[index] = self.run(batch.record(index), mem_writable=mem_writable)
                except Exception as exc:
                    tag_record(exc, index)
                    raise
        finally:
            batch.write_back()
        return out


class FixedMbuffVM(VM):
    """rbpf's fixed-metadata-buffer flavour: the VM writes the input bounds for you.

    Before every run the VM address of the input's first byte is written at
    ``data_offset`` and of the byte past its end at ``data_end_offset`` of an
    internal ``mbuff_size``-byte buffer (little-endian, ``field_size`` bytes each),
    and the program starts with r1 pointing at that buffer.
    """

    def __init__(
        self,
        program: Program | BytesLike,
        *,
        mbuff_size: int,
        data_offset: int,
        data_end_offset: int,
        field_size: int = 8,
        **options: object,
    ) -> None:
        for name, offset in (("data_offset", data_offset), ("data_end_offset", data_end_offset)):
            if not 0 <= offset <= mbuff_size - field_size:
                raise ValueError(
                    f"{name} {offset} does not fit a {field_size}-byte field in "
                    f"a {mbuff_size}-byte metadata buffer"
                )
        super().__init__(program, **options)  # type: ignore[arg-type]
        self.mbuff = bytearray(mbuff_size)
        self.data_offset = data_offset
        self.data_end_offset = data_end_offset
        self.field_size = field_size

    def execute(
        self,
        mem: BytesLike | None = None,
        *,
        mbuff: BytesLike | None = None,
        mem_writable: bool = True,
        observer: Observer | None = None,
    ) -> RunResult:
        if mbuff is not None:
            raise BpfError("FixedMbuffVM owns its metadata buffer; pass only mem")
        length = len(memoryview(mem).cast("B")) if mem is not None else 0
        start = INPUT_BASE if mem is not None else 0
        for offset, value in ((self.data_offset, start), (self.data_end_offset, start + length)):
            self.mbuff[offset : offset + self.field_size] = value.to_bytes(
                self.field_size, "little"
            )
        return super().execute(mem, mbuff=self.mbuff, mem_writable=mem_writable, observer=observer)
