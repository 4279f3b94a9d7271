"""Lowering eBPF programs to x86-64 machine code.

Register mapping (eBPF -> x86-64): r0 rbx, r1 rdi, r2 rsi, r3 r8, r4 r9, r5 r10,
r6 r12, r7 r13, r8 r14, r9 r15.  r10 is kept as a host pointer in rbp (the VM value
is ``rbp - STACK_DELTA``), r11 holds the run context, rdx the instructions left in
the budget, and rax and rcx are scratch, so x86 division and shifts never disturb an
eBPF register (division saves the meter around its use of rdx).

Every load and store translates its VM address through the region table
(:mod:`~pybpf.tiers.x86_64.layout`).  The compiler predicts the region each base
register points into (r10 the stack, r1 the input, copies and sums of those keep
their region, constants name theirs), so a predicted access is a subtraction
of that slot's lowest address, one unsigned compare against its count of valid
starts, and an add of its host address; a miss, or an access nobody predicted,
calls a shared routine that looks the slot up, and that routine leaves the run
with a memory trap when the access is outside every region.  The prediction only
picks the fast path: it never decides whether an access is allowed.  Two kinds
of access skip the check: constant offsets from r10 inside the current frame, and
accesses the value ranges prove inside it
(:func:`~pybpf.verifier.frames.frame_accesses`), addressed from rbp as
``[rbp + base + (off - r10)]`` with r10's known value.  The meter is charged
per basic block; a block that would overrun it returns to Python, which hands the
run to the interpreter at that block.  A loop that a counter bounds, whose code cannot
trap or call, also gets a guard that tests its most passes against the budget (and
the ends of its walks through memory against the region table) once, and a copy
without the meter (:meth:`_Compiler.counted_copy`, :meth:`_Compiler.passes_copy`).
Loops start on a 64-byte boundary.  A division whose dividend and divisor are
those of the division just before it (``n / d`` then ``n % d``) reuses its result.
Helper calls go through one Python callback that reads its arguments from the
context.  bpf-to-bpf calls are native calls with a shadow frame (return pc, r6-r9)
in the context.  The lowerings below are the one definition of the code; the common
rows reach them through :mod:`~pybpf.tiers.x86_64.templates`, which remembers what
they wrote for each shape of instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from pybpf.errors import TrapKind
from pybpf.isa.instruction import Instruction, written_registers
from pybpf.isa.semantics import MASK64, WIDTH_MASK
from pybpf.isa.table import INSTRUCTIONS, Form, InsnSpec, Op
from pybpf.program import NO_FALL_THROUGH, Block, Program
from pybpf.runtime.machine import MachineConfig, in_current_frame
from pybpf.runtime.memory import INPUT_BASE, STACK_BASE
from pybpf.tiers.x86_64 import layout, templates
from pybpf.tiers.x86_64.analysis import (
    ATOMIC_OPS,
    CalleeEffects,
    MeterPlan,
    access_kinds,
    callee_effects,
    meter_plan,
)
from pybpf.tiers.x86_64.encoder import AluOp, Assembler, Cond, Label, ShiftOp, UnaryOp
from pybpf.tiers.x86_64.layout import Status
from pybpf.verifier import counted, frames, ranges

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = 0, 1, 2, 3, 4, 5, 6, 7
R8, R9, R10, R11, R12, R13, R14, R15 = 8, 9, 10, 11, 12, 13, 14, 15

REGISTER_MAP = (RBX, RDI, RSI, R8, R9, R10, R12, R13, R14, R15)
"""x86-64 register of eBPF r0-r9."""
CTX = R11
FP = RBP
METER = RDX
"""Instructions left in the budget; the context's ``BUDGET_LEFT`` only at the edges."""
LOOP_ALIGNMENT = 64
"""Where a loop's first instruction starts (a multiple of this): a short loop then
sits in as few cache lines as its length allows, so fetching it costs the least
(padding runs once per way into the loop by falling, as a few NOPs)."""
CALLER_SAVED_EBPF = (RDI, RSI, R8, R9, R10)
"""x86 registers of r1-r5, which a C call may clobber."""
CALLEE_SAVED = (RBX, RBP, R12, R13, R14, R15)

_ADD, _SUB, _AND, _OR, _XOR, _CMP = AluOp.ADD, AluOp.SUB, AluOp.AND, AluOp.OR, AluOp.XOR, AluOp.CMP

# Plain names for the enum members the per-instruction code tests: on Python 3.11 an
# enum attribute goes through the metaclass's Python-level hook on every access.
_ALU_IMM, _COND_IMM, _STORE_IMM = Form.ALU_IMM, Form.COND_IMM, Form.STORE_IMM
_JSET, _LOADSX = Op.JSET, Op.LOADSX
_ABOVE_OR_EQUAL = Cond.AE
_ZERO_TESTS = frozenset({Op.JEQ, Op.JNE})

_ALU_OPS: dict[Op, AluOp] = {Op.ADD: _ADD, Op.SUB: _SUB, Op.AND: _AND, Op.OR: _OR, Op.XOR: _XOR}
_SHIFTS: dict[Op, ShiftOp] = {Op.LSH: ShiftOp.SHL, Op.RSH: ShiftOp.SHR, Op.ARSH: ShiftOp.SAR}
_JUMP_CONDITIONS: dict[Op, Cond] = {
    Op.JEQ: Cond.E,
    Op.JNE: Cond.NE,
    Op.JGT: Cond.A,
    Op.JGE: Cond.AE,
    Op.JLT: Cond.B,
    Op.JLE: Cond.BE,
    Op.JSGT: Cond.G,
    Op.JSGE: Cond.GE,
    Op.JSLT: Cond.L,
    Op.JSLE: Cond.LE,
    Op.JSET: Cond.NE,
}
_ATOMIC_ALU: dict[Op, AluOp] = {
    Op.ATOMIC_ADD: _ADD,
    Op.ATOMIC_OR: _OR,
    Op.ATOMIC_AND: _AND,
    Op.ATOMIC_XOR: _XOR,
}


@dataclass
class NativeCode:
    """The result of compiling: machine code and where each eBPF instruction starts."""

    code: bytes
    offsets: dict[int, int]
    """eBPF pc -> offset of its first machine instruction: for the first instruction
    of each block, and for every instruction when compiled with ``every_offset``."""
    entry: int
    """Offset of ``status run(context)``: one run from the registers in the context."""
    input_entry: int
    """Offset of the same run that first points the input slot of the region table at
    ``PACKET_HOST`` and ``PACKET_LENGTH`` (write counts masked with ``BATCH_WRITABLE``),
    as the record loop does for each record: Python then leaves that row alone."""
    batch_entry: int
    """Offset of ``status run_batch(context)``: the record loop (see :meth:`_Compiler.batch`),
    placed after the functions so its size does not move their code."""
    memory_sites: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    """Return offset of each call of an address check -> (pc, size, write) of its access.

    A failed check leaves the run with the return address in ``FAULT_INFO``, and this
    names the access that faulted."""
    saved_registers: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Return pc of each local call -> the registers of r6-r9 its shadow frame holds; the
    others the callee never writes, so their values now are the caller's."""
    stubs: int = 0
    stubs_offset: int = 0
    """Where the out-of-line code begins (after the record loop)."""
    frame_proofs: int = 0
    """How many accesses go unchecked because the value ranges place them inside the
    current frame (:func:`~pybpf.verifier.frames.frame_accesses`); such code assumes
    the stack :func:`~pybpf.verifier.frames.stack_top` describes."""
    counted_copies: dict[int, int] = field(default_factory=dict)
    """Code offset -> pc of each counted loop's guard, which is followed by the loop's
    copy without the meter (:meth:`_Compiler.counted_copy`, :meth:`_Compiler.passes_copy`)."""


ColdPath = Callable[[], None]
"""Out-of-line code, emitted after every function: binds its own label first."""

BlockBody = tuple[tuple[int, Instruction], ...]
"""A basic block's ``(pc, instruction)`` pairs (the second half of a :data:`Block`)."""

Regions = tuple[int | None, ...]
"""The predicted region slot of each eBPF register r0-r10 (None: no prediction).  A
tuple, rebuilt only when a prediction changes, so a forward jump carries it as is."""

_NO_PREDICTION: Regions = (None,) * 10 + (STACK_BASE >> layout.SLOT_SHIFT,)
_ENTRY_PREDICTION: Regions = (None, INPUT_BASE >> layout.SLOT_SHIFT, *_NO_PREDICTION[2:])
"""At the program's entry r1 points at the input memory (``vm.run(mem)``)."""


@dataclass(slots=True)
class _Compiler:
    program: Program
    config: MachineConfig
    every_offset: bool = False
    """Record where every instruction's code starts (listings), not just each block's."""
    asm: Assembler = field(default_factory=Assembler)
    cold: list[ColdPath] = field(default_factory=list)
    block_labels: dict[int, Label] = field(default_factory=dict)
    function_labels: dict[int, Label] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    memory_sites: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    checks: dict[tuple[int, bool], Label] = field(default_factory=dict)
    """The shared address-check routine of each (size, write), made on first use."""
    handovers: list[tuple[Label, int, int]] = field(default_factory=list)
    """The exit of each meter checkpoint that finds the budget short: label, pc, charge."""
    refunds: list[tuple[Label, int, int]] = field(default_factory=list)
    """The stub of each taken branch that gives budget back: label, amount, target pc."""
    plan: MeterPlan = field(default_factory=lambda: MeterPlan({}, {}, {}, {}))
    """The meter checkpoints of the function being compiled."""
    block_start: int = 0
    """The first pc of the block being compiled."""
    exit_ok: Label = Label(-1)
    save_exit: Label = Label(-1)
    budget_exit: Label = Label(-1)
    regions: Regions = _NO_PREDICTION
    """The region prediction at the instruction being compiled."""
    incoming: dict[int, Regions] = field(default_factory=dict)
    """Predictions carried to forward jump targets, joined."""
    numbering: bool = False
    """Whether values are numbered at all: only divisions use the numbers."""
    values: list[int] = field(default_factory=list)
    """A value number per eBPF register: equal numbers hold equal values."""
    fresh_value: int = 0
    quotient: tuple[int, tuple[str, int], int, bool] | None = None
    """(dividend value, divisor, width, signed) of the division whose quotient is in rax
    and remainder in rcx, while nothing has overwritten them."""
    zero_flag: int | None = None
    """The pc at which the zero flag tells whether the ``dst`` of the instruction just
    before it (in the same block, an ALU operation, which set this) is 0 at that
    instruction's width.  A plain int, written by every such operation."""
    frame_size: int = 0
    frame_proofs: dict[int, int] = field(default_factory=dict)
    """pc -> r10's VM value there, for each access proven inside the current frame."""
    inlined: dict[int, int] = field(default_factory=dict)
    """Entry -> length of each callee written out at its call sites
    (:func:`~pybpf.verifier.frames.inline_length`)."""
    inline_bodies: dict[int, tuple[tuple[int, Instruction], ...]] = field(default_factory=dict)
    """Their instructions, ``exit`` last."""
    unproven: tuple[int, list[Block]] | None = None
    """The function being compiled (entry, blocks) until its first access through a
    register other than r10 asks for the proofs (:meth:`frame_top_at`)."""
    accesses: tuple[tuple[int, bool], ...] = ()
    """(size, write) of the kinds of memory access the program has (:func:`access_kinds`)."""
    saved_registers: dict[int, tuple[int, ...]] = field(default_factory=dict)
    callee_effects: dict[int, CalleeEffects] = field(default_factory=dict)
    hoisted: frozenset[int] = frozenset()
    """The accesses (by pc) of the loop copy being compiled whose walk was checked
    before it: addressed as ``[base + rcx + off]``, rcx holding the region's host
    address minus its lowest VM address (:meth:`counted_copy`)."""
    counted_copies: dict[int, int] = field(default_factory=dict)
    """Code offset -> pc of each counted loop's guard and copy without the meter."""
    fused: int = -1
    """The pc of a right shift whose code the left shift before it wrote (:func:`_shift_pair`)."""

    # -- helpers ------------------------------------------------------------------

    def stub(self, status: int, pc: int) -> Label:
        """An out-of-line exit with ``status`` that records ``pc`` as the trap's.

        The run ends in the current block, so the meter gets back what was paid
        ahead for the rest of the path (the count shows when a helper stops the run
        or a packet load misses).
        """
        label = self.asm.label()
        amount = self.plan.ahead[self.block_start]

        def emit() -> None:
            asm = self.asm
            asm.bind(label)
            if amount:
                asm.alu_ri(_ADD, METER, amount)
            asm.store_i(CTX, layout.TRAP_PC, pc)
            asm.mov_ri(RAX, status, 32)
            asm.jmp(self.save_exit)

        self.cold.append(emit)
        return label

    def value_of(self, reg: int, scratch: int) -> int:
        """The x86 register holding eBPF ``reg``'s VM value (r10 is materialized)."""
        if reg != 10:
            return REGISTER_MAP[reg]
        self.asm.mov_rr(scratch, FP)
        self.asm.alu_rm(_SUB, scratch, CTX, layout.STACK_DELTA)
        return scratch

    def frame_top_at(self, pc: int) -> int | None:
        """r10's VM value at the access at ``pc`` if the value ranges prove it inside
        the current frame, else None.  The analysis runs on the first such question
        in a function: a function with none pays nothing for it."""
        if self.unproven is not None:
            entry, blocks = self.unproven
            self.unproven = None
            main_r10, callee_r10 = frames.frame_tops(self.program, self.config)
            r10 = main_r10 if entry == 0 else callee_r10
            self.frame_proofs |= frames.frame_accesses(
                self.program, blocks, ranges.entry_state(r10), self.frame_size
            )
        return self.frame_proofs.get(pc)

    def translate(self, base: int, off: int, size: int, write: bool, pc: int) -> None:
        """Leave the host address of ``[base + off]`` in rax (clobbers rcx), or trap.

        With a predicted region the check is inline; a miss takes the shared routine.
        """
        asm = self.asm
        source = self.value_of(base, RAX)
        if off:
            asm.lea(RAX, source, off)
        elif source != RAX:
            asm.mov_rr(RAX, source)
        check = self.checks.get((size, write))
        if check is None:
            check = self.checks[size, write] = asm.label()
        slot = self.regions[base]
        if slot is None:
            asm.call(check)
            self.memory_sites[asm.pos] = (pc, size, write)
            return
        slow, back = asm.label(), asm.label()
        lowest = layout.table_field(layout.LOWEST, slot)
        asm.alu_rm(_SUB, RAX, CTX, lowest)
        asm.alu_rm(_CMP, RAX, CTX, layout.table_field(layout.COUNT[size, write], slot))
        asm.jcc(_ABOVE_OR_EQUAL, slow)
        asm.alu_rm(_ADD, RAX, CTX, layout.table_field(layout.HOST, slot))
        asm.bind(back)

        def emit() -> None:
            asm.bind(slow)
            asm.alu_rm(_ADD, RAX, CTX, lowest)  # the VM address again
            asm.call(check)
            self.memory_sites[asm.pos] = (pc, size, write)
            asm.jmp(back)

        self.cold.append(emit)

    def address_check(self, label: Label, size: int, write: bool) -> None:
        """The shared check: rax = VM address in, host address out; rcx clobbered.

        Outside every region it leaves the run, its caller's return address in
        ``FAULT_INFO`` (see :attr:`NativeCode.memory_sites`).
        """
        asm = self.asm
        fault, outside = asm.label(), asm.label()
        asm.bind(label)
        asm.mov_rr(RCX, RAX)
        asm.shift_ri(ShiftOp.SHR, RCX, layout.SLOT_SHIFT)
        asm.alu_ri(_CMP, RCX, layout.SLOT_COUNT - 1)
        asm.jcc(Cond.A, fault, short=True)
        asm.alu_rm(_SUB, RAX, CTX, layout.TABLE + layout.LOWEST, index=RCX, scale=8)
        count = layout.TABLE + layout.COUNT[size, write]
        asm.alu_rm(_CMP, RAX, CTX, count, index=RCX, scale=8)
        asm.jcc(Cond.AE, outside, short=True)
        asm.alu_rm(_ADD, RAX, CTX, layout.TABLE + layout.HOST, index=RCX, scale=8)
        asm.ret()
        asm.bind(outside)
        asm.alu_rm(_ADD, RAX, CTX, layout.TABLE + layout.LOWEST, index=RCX, scale=8)
        asm.bind(fault)
        asm.load(RCX, RSP, 0)
        asm.store_r(CTX, layout.FAULT_ADDRESS, RAX)
        asm.store_r(CTX, layout.FAULT_INFO, RCX)
        asm.mov_ri(RAX, TrapKind.MEMORY_ACCESS, 32)
        asm.jmp(self.save_exit)

    def meter(self, start: int) -> None:
        """At a checkpoint, pay for the longest path to the next one, or hand over.

        If the budget cannot cover that path, the run goes to the interpreter at
        this block (the charge undone), which finishes it exactly.  Paths shorter
        than the longest give the difference back on the edge where they leave it
        (:class:`MeterPlan`), so the count is exact wherever a run can end normally.
        """
        limit = self.plan.checkpoints.get(start)
        if limit is None:
            return
        asm = self.asm
        label = asm.label()
        asm.alu_ri(_SUB, METER, limit)
        asm.jcc(Cond.B, label)
        self.handovers.append((label, start, limit))

    def give_back(self, amount: int | None) -> None:
        """Add to the meter what the path leaving here was paid ahead and does not use."""
        if amount:
            self.asm.alu_ri(_ADD, METER, amount)

    # -- program --------------------------------------------------------------------

    def compile(self) -> NativeCode:
        asm = self.asm
        self.callee_effects = callee_effects(self.program, self.config.stack_size)
        self.numbering = not _DIVISION_SPECS.isdisjoint(self.program.specs)
        self.frame_size = self.config.stack_size
        self.accesses = access_kinds(self.program)
        for entry, end in self.program.functions:
            self.function_labels[entry] = asm.label()
            length = frames.inline_length(self.program, entry, end) if entry else None
            if length is not None:
                self.inlined[entry] = length
                self.inline_bodies[entry] = self.program.basic_blocks(entry, end)[0][1]
        self.save_exit, self.exit_ok, self.budget_exit = asm.label(), asm.label(), asm.label()
        entry_offset = asm.pos
        self.prologue()
        self.load_registers()
        asm.call(self.function_labels[0])
        asm.jmp(self.exit_ok)
        input_entry_offset = asm.pos
        self.prologue()
        self.input_row(layout.PACKET_HOST, layout.PACKET_LENGTH)
        self.load_registers()
        asm.call(self.function_labels[0])
        asm.jmp(self.exit_ok)
        for entry, end in self.program.functions:
            self.function(entry, end)
        batch_offset = asm.pos
        self.prologue()
        self.batch()
        stubs_offset = asm.pos
        cold_count = len(self.cold) + len(self.handovers) + len(self.refunds)
        for emit in self.cold:
            emit()
        for label, amount, target in self.refunds:
            asm.bind(label)
            asm.alu_ri(_ADD, METER, amount)
            asm.jmp(self.block_labels[target])
        for label, pc, limit in self.handovers:
            asm.bind(label)
            asm.mov_ri(RAX, pc, 32)
            asm.mov_ri(RCX, limit, 32)
            asm.jmp(self.budget_exit)
        for (size, write), label in self.checks.items():
            self.address_check(label, size, write)
        asm.bind(self.budget_exit)
        asm.alu_rr(_ADD, METER, RCX)  # the checkpoint's charge, undone
        asm.store_r(CTX, layout.RESUME_PC, RAX)
        asm.mov_ri(RAX, Status.OUT_OF_BUDGET, 32)
        asm.jmp(self.save_exit)
        asm.bind(self.exit_ok)
        asm.mov_ri(RAX, Status.OK, 32)
        asm.bind(self.save_exit)
        self.epilogue()
        code = asm.finish()
        return NativeCode(
            code,
            self.offsets,
            entry_offset,
            input_entry_offset,
            batch_offset,
            self.memory_sites,
            self.saved_registers,
            cold_count,
            stubs_offset,
            len(self.frame_proofs),
            self.counted_copies,
        )

    def function(self, entry: int, end: int) -> None:
        """The code of one function, its blocks laid out in program order (falling
        through needs no code); a counted loop also gets a copy that runs without the
        meter when the budget allows (:meth:`counted_copy`, :meth:`passes_copy`)."""
        asm, program = self.asm, self.program
        jump_targets = program.jump_targets
        asm.bind(self.function_labels[entry])
        blocks = program.basic_blocks(entry, end)
        labels = self.block_labels
        targets = [start for start, _block in blocks if start in jump_targets]
        labels.update(zip(targets, asm.labels(len(targets)), strict=True))
        regions = self.regions = _ENTRY_PREDICTION if entry == 0 else _NO_PREDICTION
        self.unproven = (entry, blocks)
        self.incoming.clear()
        falls_through = True
        self.plan = meter_plan(blocks, self.inlined)
        checkpoints, fall_refunds = self.plan.checkpoints, self.plan.fall_refund
        loop_heads = self.plan.loop_heads
        offsets, buf = self.offsets, asm.buf
        numbering = self.numbering
        last_block = len(blocks) - 1
        incoming = self.incoming
        after_copy: Label | None = None
        for index, (start, block) in enumerate(blocks):
            if after_copy is not None:
                asm.bind(after_copy)  # where the loop's copy without the meter leaves
                after_copy = None
            # the predictions on entry: those carried by forward jumps, joined with the
            # fall-through's; a block reached only backwards knows nothing
            carried = incoming.pop(start, None)
            if carried is not None:
                regions = self.regions = _join(regions, carried) if falls_through else carried
            elif not falls_through:
                regions = self.regions = _NO_PREDICTION
            is_target = start in jump_targets
            if is_target:
                last_pc, last = block[-1]
                if not falls_through or index == last_block:
                    pass  # (a copy is entered by falling into the loop)
                elif last.spec.op in _JUMP_CONDITIONS and last_pc + 1 + last.off == start:
                    after_copy = self.counted_copy(start, block)  # a loop of one block
                elif start in self.plan.loop_ends:
                    self.passes_copy(index, self.plan.loop_ends[start], blocks)
                if numbering:
                    self.unknown_values()  # more than one way in
                if start in loop_heads:
                    asm.align(LOOP_ALIGNMENT)
                asm.bind(labels[start])
            elif numbering and start == entry:
                self.unknown_values()
            block_offset = len(buf)  # the block's meter code shows with its first insn
            self.block_start, self.zero_flag = start, None  # (other ways in, the meter)
            if start in checkpoints:
                self.meter(start)
            regions = self.lower_block(block)
            offsets[start] = block_offset
            falls_through = block[-1][1].spec.op not in NO_FALL_THROUGH
            if falls_through and index < last_block and start in fall_refunds:
                asm.alu_ri(_ADD, METER, fall_refunds[start])

    def lower_block(self, block: BlockBody) -> Regions:
        """The code of a block's instructions, after its meter check.  The loop follows
        each instruction's writes in the region predictions and value numbers inline:
        it runs once per instruction.  Returns the predictions at the block's end."""
        buf, rows, offsets = self.asm.buf, _ROWS, self.offsets
        numbering, every_offset = self.numbering, self.every_offset
        regions, values = self.regions, self.values
        for pc, insn in block:
            if every_offset:
                offsets[pc] = len(buf)
            row = rows[insn.spec]
            row.lower(self, pc, insn)
            if numbering:
                if not row.keeps_scratch or insn.dst == 10 or insn.src == 10:
                    self.quotient = None
                if row.writes_dst:
                    dst = insn.dst
                    if row.copies_value:
                        values[dst] = values[insn.src]
                    else:
                        values[dst] = self.fresh_value
                        self.fresh_value += 1
            rule = row.dst_region
            if rule is _no_region:
                if regions[insn.dst] is not None:
                    regions = self.regions = _predict(regions, insn.dst, None)
            elif rule is not None:
                region = rule(regions, insn)
                if region != regions[insn.dst]:
                    regions = self.regions = _predict(regions, insn.dst, region)
            elif row.other_writes is not None:
                self.forget(_OTHER_WRITES[row.other_writes](insn))
                regions = self.regions
        return regions

    def counted_copy(self, start: int, block: BlockBody) -> Label | None:
        """A one-block loop that a counter bounds (:func:`~pybpf.verifier.counted.one_block_loop`)
        gets a guard where it is fallen into, and a copy of itself without the meter.

        The block runs exactly ``trips + 1`` times (it leaves only by falling through its
        counter test: nothing in the copy can trap, call or stop the run), so when the
        budget covers that many passes the guard pays for all of them at once.  Accesses
        the copy would check must be walks (:func:`~pybpf.verifier.counted.walks`) of
        one predicted region: the guard tests both ends of each walk against the region
        table, and the copy adds the region's host offset, kept in rcx, to the address.
        The copy leaves for the next block with the meter the loop would have left, so
        the code after it is shared; a failed test takes the loop as it is.  Returns the
        label of the next block, or None (and no code) when the loop does not qualify.
        """
        if self.plan.checkpoints.get(start) != len(block) or start in self.plan.fall_refund:
            return None
        if start in self.plan.jump_refund:
            return None
        body = [insn for _pc, insn in block]
        loop = counted.one_block_loop(body)
        if loop is None or not _copyable_counter(loop):
            return None
        walks = {walk.index: walk for walk in counted.walks(body)}
        checked: list[counted.Walk] = []
        for index, (pc, insn) in enumerate(block):
            kind = self.in_copy(pc, insn)
            if kind is _CHECKED:
                walk = walks.get(index)
                if walk is None or 10 in walk.bases or not _walk_fits(walk, 0):
                    return None  # (r10 is a host pointer here, not a VM value)
                checked.append(walk)
            elif kind is not _UNCHECKED:
                return None
        slot = self.walk_slot(checked)
        if slot is None:
            return None  # a walk of no predicted region, or of two
        asm = self.asm
        metered, after, fast = self.block_labels[start], asm.label(), asm.label()
        self.counted_copies[asm.pos] = start
        self.quotient = None
        self.trips(loop, metered)
        for walk in checked:
            self.walk_check(walk, slot, metered, 0)
        limit = len(block)
        asm.lea(RAX, RCX, 1)
        asm.imul_rri(RAX, RAX, limit)
        asm.alu_rr(_CMP, METER, RAX)
        asm.jcc(Cond.B, metered)
        asm.alu_rr(_SUB, METER, RAX)  # every pass, paid ahead
        if checked:
            self.host_offset(slot)
        with self.copy_of(start, fast, {block[walk.index][0] for walk in checked}):
            self.block_start, self.zero_flag = start, None
            self.lower_block(block)
        asm.jmp(after)
        return after

    @contextmanager
    def copy_of(self, start: int, fast: Label, hoisted: set[int]) -> Iterator[None]:
        """Compile a loop's copy without the meter, at ``fast`` (a loop head, so it is
        aligned), its backward jumps going there and the ``hoisted`` accesses
        addressed through rcx; afterwards the loop as it is compiles with the
        predictions and labels the copy began with, and no offsets of the copy show
        in a listing."""
        labels, regions, every_offset = self.block_labels, self.regions, self.every_offset
        metered = labels[start]
        if self.numbering:
            self.unknown_values()
        self.hoisted, self.every_offset = frozenset(hoisted), False
        labels[start] = fast
        self.asm.align(LOOP_ALIGNMENT)
        self.asm.bind(fast)
        try:
            yield
        finally:
            labels[start] = metered
            self.hoisted, self.every_offset, self.regions = frozenset(), every_offset, regions

    def passes_copy(self, first: int, last: int, blocks: list[Block]) -> None:
        """A loop of several blocks that a counter bounds, where every pass runs them all
        (each but the last going on or leaving the loop, the last stepping the counter
        and jumping back with ``ja``), gets a guard where it is fallen into and a copy
        without the meter, as :meth:`counted_copy` does for one block.

        The guard sees the budget cover the checks of the loop as it is at every pass
        it can start (``trips * pass + limit``) and keeps the counter in ``LOOP_START``;
        each way out of the copy charges what that path ran (``(counter - start) /
        step`` passes, and the blocks of the last one up to the way out) and what the
        code it goes to expects to find paid ahead.  Nothing in the copy traps or calls
        (every access is in the frame or is a walk the guard tests, those after the
        counter's test for one pass fewer), so no other way ends it.
        """
        plan, asm = self.plan, self.asm
        loop_blocks = blocks[first : last + 1]
        start = loop_blocks[0][0]
        limit = plan.checkpoints.get(start)
        end = loop_blocks[-1][1][-1][0] + 1
        if limit is None or any(s in plan.checkpoints for s, _body in loop_blocks[1:]):
            return
        exits: dict[int, int] = {}
        for block_start, body in loop_blocks[:-1]:
            pc, insn = body[-1]
            if insn.spec.op in _JUMP_CONDITIONS:
                target = pc + 1 + insn.off
                if start <= target < end:
                    return  # a jump inside the loop: passes may differ
                exits[block_start] = target
        checked: list[int] = []  # positions in the pass of the accesses to test
        pairs = [pair for _start, body in loop_blocks for pair in body]
        for position, (pc, insn) in enumerate(pairs[:-1]):
            kind = self.in_copy(pc, insn)
            if kind is _CHECKED:
                checked.append(position)
            elif kind is not _UNCHECKED:
                return  # it may trap or call, or r10 is a value
        bodies = [[insn for _pc, insn in body] for _start, body in loop_blocks]
        targets: list[int | None] = [None if s not in exits else last + 1 for s, _b in loop_blocks]
        targets[-1] = first
        falls = [True] * (len(loop_blocks) - 1) + [False]
        lengths = [len(body) for body in bodies]
        shape = counted.LoopShape(first, last, bodies, targets, falls, lengths)
        written = [reg for body in bodies for insn in body for reg in ranges.written(insn)]
        loop = counted.counted_loop(shape, written)
        if loop is None or loop.updated_first or not _copyable_counter(loop):
            return
        if not any(loop.counter in ranges.written(insn) for insn in bodies[-1]):
            return  # stepped before a way out: that way would see a pass more
        # the accesses after the counter's test run in one pass fewer than the test
        tested = sum(lengths[: loop.test_block - first + 1]) - 1
        walks = {walk.index: walk for walk in counted.walks([insn for _pc, insn in pairs])}
        tests: list[tuple[counted.Walk, int]] = []
        for position in checked:
            walk, last_pass = walks.get(position), -1 if position > tested else 0
            if walk is None or 10 in walk.bases or not _walk_fits(walk, last_pass):
                return  # a checked access the guard cannot test once
            tests.append((walk, last_pass))
        slot = self.walk_slot([walk for walk, _last in tests])
        if slot is None:
            return
        metered, fast = self.block_labels[start], asm.label()
        passes = sum(lengths)
        self.counted_copies[asm.pos] = start
        self.quotient = None
        self.trips(loop, metered)
        for walk, last_pass in tests:
            self.walk_check(walk, slot, metered, last_pass)
        counter = REGISTER_MAP[loop.counter]
        asm.imul_rri(RAX, RCX, passes)
        asm.alu_ri(_ADD, RAX, limit)
        asm.alu_rr(_CMP, METER, RAX)
        asm.jcc(Cond.B, metered)
        asm.store_r(CTX, layout.LOOP_START, counter)
        if tests:
            self.host_offset(slot)
        labels = self.block_labels
        self.plan = MeterPlan(plan.checkpoints, plan.ahead, {}, {})  # the ways out pay
        leaving: list[tuple[Label, int, int]] = []  # label, instructions run, target
        ran = 0
        try:
            with self.copy_of(start, fast, {pairs[walk.index][0] for walk, _last in tests}):
                for block_start, body in loop_blocks:
                    ran += len(body)
                    self.block_start, self.zero_flag = block_start, None
                    way_out = exits.get(block_start)
                    if way_out is None:
                        self.lower_block(body)
                        continue
                    away = labels[way_out]
                    labels[way_out] = asm.label()
                    leaving.append((labels[way_out], ran, way_out))
                    try:
                        self.lower_block(body)
                    finally:
                        labels[way_out] = away
        finally:
            self.plan = plan
        shift = abs(loop.step).bit_length() - 1
        for label, ran, target in leaving:
            asm.bind(label)
            if loop.step < 0:
                asm.load(RAX, CTX, layout.LOOP_START)
                asm.alu_rr(_SUB, RAX, counter)
            else:
                asm.mov_rr(RAX, counter)
                asm.alu_rm(_SUB, RAX, CTX, layout.LOOP_START)
            if shift:
                asm.shift_ri(ShiftOp.SHR, RAX, shift)  # the passes made
            asm.imul_rri(RAX, RAX, passes)
            ahead = 0 if target in plan.checkpoints else plan.longest[target]
            asm.alu_ri(_ADD, RAX, ran + ahead)
            asm.alu_rr(_SUB, METER, RAX)
            asm.jmp(labels[target])

    def host_offset(self, slot: int) -> None:
        """rcx = the host address of region ``slot`` minus its lowest VM address, which
        a loop copy adds to a tested walk's address (:attr:`hoisted`)."""
        self.asm.load(RCX, CTX, layout.table_field(layout.HOST, slot))
        self.asm.alu_rm(_SUB, RCX, CTX, layout.table_field(layout.LOWEST, slot))

    def walk_slot(self, checked: list[counted.Walk]) -> int | None:
        """The region slot every walk of ``checked`` is predicted in (each walk by its
        first base with a prediction here), 0 for no walks, or None: none, or two.
        The guard tests the walks against that slot's row, so a wrong prediction only
        sends the run to the loop as it is."""
        slots: set[int | None] = set()
        for walk in checked:
            found = [self.regions[base] for base in walk.bases if self.regions[base] is not None]
            slots.add(found[0] if found else None)
        if not slots:
            return 0
        return slots.pop() if len(slots) == 1 else None

    def in_copy(self, pc: int, insn: Instruction) -> bool | None:
        """How ``insn`` may run in a loop's copy without the meter: :data:`_UNCHECKED`
        (no check, no trap), :data:`_CHECKED` (an access its address check guards), or
        None: not at all (it may trap or call, or its code uses rcx, which the copy
        keeps: r10 as a value, a shift by a register, a division)."""
        spec = insn.spec
        if spec not in _COPYABLE or insn.src == 10 and spec.form is not _LOAD:
            return None
        if spec.op not in _PLAIN_ACCESSES:
            return None if insn.dst == 10 else _UNCHECKED
        if in_current_frame(ranges.access_base(insn), insn.off, spec.size, self.frame_size):
            return _UNCHECKED
        return _UNCHECKED if self.frame_top_at(pc) is not None else _CHECKED

    def trips(self, loop: counted.Counted, metered: Label) -> None:
        """rcx = the passes after the first that a counted loop makes from here
        (:data:`~pybpf.verifier.counted.TRIPS`, for a power-of-two step), or a jump to
        ``metered`` when the counter may never meet its bound or the passes are more
        than 2**31 - 1 (so no product below overflows); clobbers rax."""
        asm = self.asm
        op, step = loop.condition, loop.step
        magnitude = abs(step)
        shift = magnitude.bit_length() - 1
        counter = REGISTER_MAP[loop.counter]
        if loop.bound is not None:
            bound = REGISTER_MAP[loop.bound]
            never = _NEVER_TESTS.get(op)
            if never is not None:  # the bound for which a step may carry past it
                cond, imm = never(magnitude)
                asm.alu_ri(_CMP, bound, imm)
                asm.jcc(cond, metered)
        if step > 0:  # rcx = bound - first, with the flags of the subtraction
            first = counter
            if loop.updated_first:
                first = RAX
                asm.lea(RAX, counter, step)
            if loop.bound is None:
                asm.mov_ri(RCX, loop.constant)
            else:
                asm.mov_rr(RCX, bound)
            asm.alu_rr(_SUB, RCX, first)
        else:  # rcx = first - bound
            if loop.updated_first:
                asm.lea(RCX, counter, step)
            else:
                asm.mov_rr(RCX, counter)
            if loop.bound is not None:
                asm.alu_rr(_SUB, RCX, bound)
            elif loop.constant or op is not Op.JNE:  # (JNE needs no flags)
                # (the constant came from a sign-extended imm32)
                asm.alu_ri(_SUB, RCX, loop.constant - (loop.constant >> 63 << 64))
        none, done = asm.label(), asm.label()
        if op is Op.JNE:
            if magnitude > 1:
                asm.test_ri(RCX, magnitude - 1)
                asm.jcc(Cond.NE, metered)  # never met: stepping over the bound
        else:
            strict = op in (Op.JLT, Op.JGT)
            asm.jcc(Cond.BE if strict else Cond.B, none)
            if strict and magnitude > 1:
                asm.alu_ri(_ADD, RCX, magnitude - 1)  # rounded up
        if shift:
            asm.shift_ri(ShiftOp.SHR, RCX, shift)
        if op in (Op.JLE, Op.JGE):
            asm.alu_ri(_ADD, RCX, 1)
        if op is not Op.JNE:
            asm.jmp(done, short=True)
            asm.bind(none)
            asm.zero(RCX)
            asm.bind(done)
        asm.alu_ri(_CMP, RCX, _MOST_TRIPS)
        asm.jcc(Cond.A, metered)

    def walk_check(self, walk: counted.Walk, slot: int, metered: Label, last_pass: int) -> None:
        """Jump to ``metered`` unless the first and the last address of ``walk`` are
        valid starts of its access in region ``slot``: the addresses between them are
        then too.  The last pass that reaches it is rcx (the passes after the first)
        plus ``last_pass`` (0 or -1; at -1 with rcx 0 none does).  Clobbers rax."""
        asm = self.asm
        bases = [REGISTER_MAP[base] for base in walk.bases]
        lowest = layout.table_field(layout.LOWEST, slot)
        count = layout.table_field(layout.COUNT[walk.size, walk.write], slot)
        skip = asm.label()
        if last_pass:
            asm.test_rr(RCX, RCX)
            asm.jcc(Cond.E, skip)
        if walk.start or len(bases) > 1:
            asm.lea(RAX, bases[0], walk.start, bases[1] if len(bases) > 1 else None)
        else:
            asm.mov_rr(RAX, bases[0])
        asm.alu_rm(_SUB, RAX, CTX, lowest)
        asm.alu_rm(_CMP, RAX, CTX, count)
        asm.jcc(Cond.AE, metered)
        asm.imul_rri(RAX, RCX, walk.step)  # |passes * step| < 2**62
        for base in bases:
            asm.alu_rr(_ADD, RAX, base)
        last = walk.start + last_pass * walk.step
        if last:
            asm.lea(RAX, RAX, last)
        asm.alu_rm(_SUB, RAX, CTX, lowest)
        asm.alu_rm(_CMP, RAX, CTX, count)
        asm.jcc(Cond.AE, metered)
        asm.bind(skip)

    def unknown_values(self) -> None:
        """Give every register a fresh value number (a block with several ways in)."""
        self.values = list(range(self.fresh_value, self.fresh_value + 11))
        self.fresh_value += 11
        self.quotient = None

    def forget(self, written: tuple[int, ...]) -> None:
        """Registers an instruction writes besides ``dst`` hold new, unpredicted values."""
        for reg in written:
            if self.regions[reg] is not None:
                self.regions = _predict(self.regions, reg, None)
            if self.numbering:
                self.values[reg] = self.fresh_value
                self.fresh_value += 1

    def prologue(self) -> None:
        """Save the C callee-saved registers and remember rsp for every exit path."""
        asm = self.asm
        for reg in CALLEE_SAVED:
            asm.push(reg)
        asm.alu_ri(_SUB, RSP, 8)  # 6 pushes + the return address: realign to 16
        asm.mov_rr(CTX, RDI)
        asm.store_r(CTX, layout.SAVED_RSP, RSP)

    def batch(self) -> None:
        """The record loop: map record ``i``, run the program, store r0, repeat.

        Records are laid out as :class:`pybpf.batch.BatchInput` describes.  Any
        non-OK status leaves the loop with ``BATCH_INDEX`` naming the record;
        Python deals with it and re-enters for the rest.
        """
        asm = self.asm
        done, loop = asm.label(), asm.label()
        input_slot = INPUT_BASE >> layout.SLOT_SHIFT
        asm.bind(loop)
        asm.load(RAX, CTX, layout.BATCH_INDEX)
        asm.alu_rm(_CMP, RAX, CTX, layout.BATCH_COUNT)
        asm.jcc(Cond.AE, done)
        r1, r2 = REGISTER_MAP[1], REGISTER_MAP[2]
        varying, located = asm.label(), asm.label()
        asm.load(r2, CTX, layout.BATCH_STRIDE)
        asm.test_rr(r2, r2)
        asm.jcc(Cond.E, varying)
        asm.mov_rr(RDX, RAX)  # fixed-size records: offset = index * stride
        asm.imul_rr(RDX, r2)
        asm.jmp(located)
        asm.bind(varying)
        asm.load(RCX, CTX, layout.BATCH_LENGTHS)
        asm.load(r2, RCX, 0, index=RAX, scale=8)
        asm.load(RCX, CTX, layout.BATCH_OFFSETS)
        asm.load(RDX, RCX, 0, index=RAX, scale=8)
        asm.bind(located)
        asm.alu_rm(_ADD, RDX, CTX, layout.BATCH_HOST)
        asm.store_r(CTX, layout.PACKET_HOST, RDX)
        asm.store_r(CTX, layout.PACKET_LENGTH, r2)
        asm.store_r(CTX, layout.table_field(layout.HOST, input_slot), RDX)
        for ebpf, reg in enumerate(REGISTER_MAP):
            if ebpf not in (1, 2):
                asm.zero(reg)
        self.input_counts(r2, REGISTER_MAP[0])
        asm.mov_ri(r1, INPUT_BASE)
        asm.load(FP, CTX, layout.STACK_TOP_HOST)
        self.zero_stack()
        asm.load(METER, CTX, layout.BATCH_BUDGET)
        asm.call(self.function_labels[0])
        asm.load(RAX, CTX, layout.BATCH_INDEX)
        asm.load(RCX, CTX, layout.BATCH_OUT)
        asm.store_r(RCX, 0, REGISTER_MAP[0], index=RAX, scale=8)
        asm.alu_ri(_ADD, RAX, 1)
        asm.store_r(CTX, layout.BATCH_INDEX, RAX)
        asm.jmp(loop)
        asm.bind(done)
        asm.jmp(self.exit_ok)

    def input_row(self, host: int, length: int) -> None:
        """Point the input slot's row at the buffer whose host address and length are
        the context fields ``host`` and ``length`` (clobbers rax, rcx, rdx, rsi, rbx)."""
        asm = self.asm
        slot = INPUT_BASE >> layout.SLOT_SHIFT
        asm.load(RDX, CTX, host)
        asm.store_r(CTX, layout.table_field(layout.HOST, slot), RDX)
        asm.load(RSI, CTX, length)
        asm.zero(RBX)
        self.input_counts(RSI, RBX)

    def input_counts(self, length: int, zero: int) -> None:
        """The input slot's counts for a record of ``length`` bytes (its lowest address
        is always ``INPUT_BASE``): ``length - size + 1``, or 0 when the record is
        shorter than ``size``; write counts masked by ``BATCH_WRITABLE``.  Only the
        kinds of access the program has are kept (``zero`` holds 0)."""
        asm = self.asm
        slot = INPUT_BASE >> layout.SLOT_SHIFT
        for size in sorted({size for size, _write in self.accesses}):
            asm.mov_rr(RAX, length)
            if size > 1:
                asm.alu_ri(_SUB, RAX, size - 1)
                asm.cmov(Cond.B, RAX, zero)  # shorter than one access
            if (size, False) in self.accesses:
                asm.store_r(CTX, layout.table_field(layout.COUNT[size, False], slot), RAX)
            if (size, True) in self.accesses:
                asm.alu_rm(_AND, RAX, CTX, layout.BATCH_WRITABLE)
                asm.store_r(CTX, layout.table_field(layout.COUNT[size, True], slot), RAX)

    def zero_stack(self) -> None:
        """Give the record a zeroed stack, as a separate run would have: the words the
        context names (``ZERO_START``, ``ZERO_WORDS``), which Python sets from
        :func:`~pybpf.tiers.x86_64.analysis.stack_footprint` when a batch first runs."""
        asm = self.asm
        loop, done = asm.label(), asm.label()
        asm.mov_rr(RAX, FP)
        asm.alu_rm(_ADD, RAX, CTX, layout.ZERO_START)
        asm.load(RCX, CTX, layout.ZERO_WORDS)
        asm.test_rr(RCX, RCX)
        asm.jcc(Cond.E, done, short=True)
        asm.bind(loop)
        asm.store_i(RAX, 0, 0)
        asm.alu_ri(_ADD, RAX, 8)
        asm.alu_ri(_SUB, RCX, 1)
        asm.jcc(Cond.NE, loop)
        asm.bind(done)

    def load_registers(self) -> None:
        """Take the eBPF registers and the meter from the context (r10 as a host pointer)."""
        asm = self.asm
        for ebpf, reg in enumerate(REGISTER_MAP):
            asm.load(reg, CTX, layout.REGS + 8 * ebpf)
        asm.load(FP, CTX, layout.REGS + 80)
        asm.alu_rm(_ADD, FP, CTX, layout.STACK_DELTA)
        asm.load(METER, CTX, layout.BUDGET_LEFT)

    def epilogue(self) -> None:
        """Store the eBPF registers and the meter back and return the status in eax."""
        asm = self.asm
        asm.load(RSP, CTX, layout.SAVED_RSP)
        for ebpf, reg in enumerate(REGISTER_MAP):
            asm.store_r(CTX, layout.REGS + 8 * ebpf, reg)
        asm.store_r(CTX, layout.BUDGET_LEFT, METER)
        asm.mov_rr(RCX, FP)
        asm.alu_rm(_SUB, RCX, CTX, layout.STACK_DELTA)
        asm.store_r(CTX, layout.REGS + 80, RCX)
        asm.alu_ri(_ADD, RSP, 8)
        for reg in reversed(CALLEE_SAVED):
            asm.pop(reg)
        asm.ret()

    # -- instructions ----------------------------------------------------------------

    def move(self, pc: int, insn: Instruction) -> None:
        spec = insn.spec
        width = spec.width
        dst = REGISTER_MAP[insn.dst]
        if spec.form is _ALU_IMM:
            self.asm.mov_ri(dst, insn.imm & WIDTH_MASK[width] if width == 32 else insn.imm, width)
        else:
            self.asm.mov_rr(dst, self.value_of(insn.src, RCX), width)

    def binary(self, pc: int, insn: Instruction) -> None:
        """ADD, SUB, AND, OR, XOR: one x86 instruction each, whose zero flag then tells
        whether ``dst`` is 0 (see :meth:`conditional`)."""
        spec = insn.spec
        operation = _ALU_OPS[spec.op]
        if spec.form is _ALU_IMM:
            self.asm.alu_ri(operation, REGISTER_MAP[insn.dst], insn.imm, spec.width)
        else:
            source = self.value_of(insn.src, RCX)
            self.asm.alu_rr(operation, REGISTER_MAP[insn.dst], source, spec.width)
        self.zero_flag = pc + 1

    def multiply(self, pc: int, insn: Instruction) -> None:
        spec = insn.spec
        dst = REGISTER_MAP[insn.dst]
        if spec.form is _ALU_IMM:
            self.asm.imul_rri(dst, dst, insn.imm, spec.width)
        else:
            self.asm.imul_rr(dst, self.value_of(insn.src, RCX), spec.width)

    def shift(self, pc: int, insn: Instruction) -> None:
        """Shift counts are masked to the width, as x86 does for counts in cl."""
        asm = self.asm
        spec = insn.spec
        width = spec.width
        dst = REGISTER_MAP[insn.dst]
        shift = _SHIFTS[spec.op]
        if spec.form is _ALU_IMM:
            amount = insn.imm & (width - 1)
            if amount:
                asm.shift_ri(shift, dst, amount, width)
            elif width == 32:
                asm.mov_rr(dst, dst, 32)
            return
        source = self.value_of(insn.src, RCX)
        if source != RCX:
            asm.mov_rr(RCX, source)
        asm.shift_cl(shift, dst, width)
        if width == 32:
            asm.mov_rr(dst, dst, 32)  # a shift by 0 may leave the upper half

    def division(self, pc: int, insn: Instruction) -> None:
        """DIV/SDIV/MOD/SMOD with RFC 9669's answers for zero and INT_MIN / -1.

        Every path leaves the quotient in rax and the remainder in rcx, so the next
        division of the same values (see :meth:`after`) is a move.  rdx, the meter,
        is saved around x86 ``div``, which writes it.
        """
        asm = self.asm
        spec = insn.spec
        width = spec.width
        dst = REGISTER_MAP[insn.dst]
        signed = spec.op in (Op.SDIV, Op.SMOD)
        modulo = spec.op in (Op.MOD, Op.SMOD)
        immediate = spec.form is _ALU_IMM
        divisor = insn.imm & WIDTH_MASK[width] if immediate else None
        if divisor == 0:
            self.quotient = None
            if not modulo:
                asm.zero(dst)
            elif width == 32:
                asm.mov_rr(dst, dst, 32)
            return
        operand = ("imm", divisor) if divisor is not None else ("reg", self.values[insn.src])
        done_key = (self.values[insn.dst], operand, width, signed)
        if self.quotient == done_key:
            asm.mov_rr(dst, RCX if modulo else RAX, width)
            return
        asm.push(METER)
        asm.mov_rr(RAX, dst, width)
        if divisor is not None:
            asm.mov_ri(RCX, divisor, width)
        else:
            source = self.value_of(insn.src, RCX)
            if source != RCX:
                asm.mov_rr(RCX, source, width)
        done = asm.label()
        if divisor is None:
            by_zero = asm.label()
            asm.test_rr(RCX, RCX, width)
            asm.jcc(Cond.E, by_zero)
            self.cold.append(lambda: self._quotient_by_zero(by_zero, done))
        if signed and divisor in (None, WIDTH_MASK[width]):
            # x86 idiv faults on INT_MIN / -1; RFC 9669 wants INT_MIN and 0 (x / -1 = -x)
            minus_one = asm.label()
            asm.alu_ri(_CMP, RCX, -1, width)
            asm.jcc(Cond.E, minus_one)
            self.cold.append(lambda: self._quotient_by_minus_one(minus_one, done, width))
        if signed:
            if width == 64:
                asm.cqo()
            else:
                asm.cdq()
            asm.unary(UnaryOp.IDIV, RCX, width)
        else:
            asm.zero(RDX)
            asm.unary(UnaryOp.DIV, RCX, width)
        asm.bind(done)
        asm.mov_rr(RCX, RDX)
        asm.pop(METER)
        asm.mov_rr(dst, RCX if modulo else RAX, width)
        self.quotient = done_key

    def _quotient_by_zero(self, label: Label, done: Label) -> None:
        """x / 0: quotient 0, remainder x (rax holds x, zero-extended when 32-bit)."""
        self.asm.bind(label)
        self.asm.mov_rr(RDX, RAX)
        self.asm.zero(RAX)
        self.asm.jmp(done)

    def _quotient_by_minus_one(self, label: Label, done: Label, width: int) -> None:
        """x / -1 (signed): quotient -x, wrapping for INT_MIN; remainder 0."""
        self.asm.bind(label)
        self.asm.unary(UnaryOp.NEG, RAX, width)
        self.asm.zero(RDX)
        self.asm.jmp(done)

    def neg(self, pc: int, insn: Instruction) -> None:
        self.asm.unary(UnaryOp.NEG, REGISTER_MAP[insn.dst], insn.spec.width)

    def movsx(self, pc: int, insn: Instruction) -> None:
        source = self.value_of(insn.src, RCX)
        self.asm.movsx_rr(REGISTER_MAP[insn.dst], source, insn.spec.size * 8, insn.spec.width)

    def byte_order(self, pc: int, insn: Instruction) -> None:
        asm = self.asm
        dst = REGISTER_MAP[insn.dst]
        size = insn.spec.size
        if insn.spec.op is Op.LE:
            if size == 2:
                asm.movzx_rr(dst, dst, 16)
            elif size == 4:
                asm.mov_rr(dst, dst, 32)
            return
        if size == 2:
            asm.shift_ri(ShiftOp.ROL, dst, 8, 16)
            asm.movzx_rr(dst, dst, 16)
        else:
            asm.bswap(dst, size * 8)

    def lddw(self, pc: int, insn: Instruction) -> None:
        self.asm.mov_ri(REGISTER_MAP[insn.dst], insn.imm & MASK64)

    def load(self, pc: int, insn: Instruction) -> None:
        size = insn.spec.size
        signed = insn.spec.op is _LOADSX
        dst = REGISTER_MAP[insn.dst]
        if in_current_frame(insn.src, insn.off, size, self.frame_size):
            self.asm.load(dst, FP, insn.off, size * 8, signed)
            return
        top = self.frame_top_at(pc)
        if top is not None:  # host address: the frame's top plus (base + off - r10)
            self.asm.load(dst, FP, insn.off - top, size * 8, signed, REGISTER_MAP[insn.src])
            return
        if pc in self.hoisted:  # a walk checked before the loop: rcx is the host offset
            self.asm.load(dst, REGISTER_MAP[insn.src], insn.off, size * 8, signed, RCX)
            return
        self.translate(insn.src, insn.off, size, False, pc)
        self.asm.load(dst, RAX, 0, size * 8, signed)

    def store(self, pc: int, insn: Instruction) -> None:
        asm = self.asm
        size = insn.spec.size
        index = None
        if in_current_frame(insn.dst, insn.off, size, self.frame_size):
            base, disp = FP, insn.off
        elif (top := self.frame_top_at(pc)) is not None:  # as in load
            base, disp, index = FP, insn.off - top, REGISTER_MAP[insn.dst]
        elif pc in self.hoisted:  # as in load
            base, disp, index = REGISTER_MAP[insn.dst], insn.off, RCX
        else:
            self.translate(insn.dst, insn.off, size, True, pc)
            base, disp = RAX, 0
        if insn.spec.form is _STORE_IMM:
            imm = insn.imm if size == 8 else insn.imm & WIDTH_MASK[size * 8]
            asm.store_i(base, disp, imm, size * 8, index)
        else:  # the value after the check, which may clobber rcx
            asm.store_r(base, disp, self.value_of(insn.src, RCX), size * 8, index)

    def atomic(self, pc: int, insn: Instruction) -> None:
        asm = self.asm
        spec = insn.spec
        width = spec.width
        top = self.frame_top_at(pc)
        if top is None:
            self.translate(insn.dst, insn.off, spec.size, True, pc)
        else:  # as in load
            asm.lea(RAX, FP, insn.off - top, REGISTER_MAP[insn.dst])
        src = self.value_of(insn.src, RCX)  # r10 only where the source is not written back
        op = spec.op
        if op is Op.ATOMIC_CMPXCHG:
            asm.push(METER)
            asm.mov_rr(RDX, RAX)
            asm.mov_rr(RAX, REGISTER_MAP[0])
            asm.lock_cmpxchg(RDX, 0, src, width)
            asm.mov_rr(REGISTER_MAP[0], RAX, width)  # r0 = old, zero-extended
            asm.pop(METER)
            return
        if op is Op.ATOMIC_XCHG:
            asm.mov_rr(RCX, src, width)
            asm.xchg_mr(RAX, 0, RCX, width)
            asm.mov_rr(src, RCX, width)
            return
        if not spec.fetch:
            asm.lock_alu(_ATOMIC_ALU[op], RAX, 0, src, width)
            return
        if op is Op.ATOMIC_ADD:
            asm.mov_rr(RCX, src, width)
            asm.lock_xadd(RAX, 0, RCX, width)
            asm.mov_rr(src, RCX, width)
            return
        # fetch-or/and/xor: a compare-and-swap loop returning the old value
        asm.push(METER)
        asm.mov_rr(RDX, RAX)
        retry = asm.label()
        asm.bind(retry)
        asm.load(RAX, RDX, 0, width)
        asm.mov_rr(RCX, RAX, width)
        asm.alu_rr(_ATOMIC_ALU[op], RCX, src, width)
        asm.lock_cmpxchg(RDX, 0, RCX, width)
        asm.jcc(Cond.NE, retry)
        asm.mov_rr(src, RAX, width)
        asm.pop(METER)

    def packet_load(self, pc: int, insn: Instruction) -> None:
        """Legacy LD_ABS/LD_IND: a big-endian read of the input; a miss ends the run."""
        asm = self.asm
        size = insn.spec.size
        miss = self.stub(Status.PACKET_MISS, pc)
        if insn.spec.op is Op.LD_ABS:
            if insn.imm < 0:
                asm.jmp(miss)
                return
            asm.mov_ri(RAX, insn.imm)
        else:
            source = self.value_of(insn.src, RAX)
            asm.mov_rr(RAX, source, 32)
            asm.alu_ri(_ADD, RAX, insn.imm, 32)
            asm.movsx_rr(RAX, RAX, 32)
            asm.test_rr(RAX, RAX)
            asm.jcc(Cond.S, miss)
        asm.lea(RCX, RAX, size)
        asm.alu_rm(_CMP, RCX, CTX, layout.PACKET_LENGTH)
        asm.jcc(Cond.A, miss)
        asm.alu_rm(_ADD, RAX, CTX, layout.PACKET_HOST)
        r0 = REGISTER_MAP[0]
        asm.load(r0, RAX, 0, size * 8)
        if size == 2:
            asm.shift_ri(ShiftOp.ROL, r0, 8, 16)
            asm.movzx_rr(r0, r0, 16)
        elif size == 4:
            asm.bswap(r0, 32)

    def jump(self, pc: int, insn: Instruction) -> None:
        target = self.program.target_of(pc, insn)
        assert target is not None
        self.carry(pc, target)
        self.give_back(self.plan.jump_refund.get(self.block_start))
        self.asm.jmp(self.block_labels[target])

    def carry(self, pc: int, target: int) -> None:
        """Take the region predictions along a forward jump (back edges are not followed:
        a prediction only picks a fast path, so it may be wrong)."""
        if target > pc:
            known = self.incoming.get(target)
            self.incoming[target] = self.regions if known is None else _join(known, self.regions)

    def conditional(self, pc: int, insn: Instruction) -> None:
        """The compare (:meth:`compare`, through its row's templates), then ``jcc`` to
        the target block or to the stub that gives back what the taken path does not
        use; forward jumps carry the region predictions along."""
        spec = insn.spec
        if (
            insn.imm == 0
            and spec.op in _ZERO_TESTS
            and spec.form is _COND_IMM
            and self.zero_flag == pc
            and _same_result(self.program.by_pc[pc - 1], insn)
        ):  # ``jeq``/``jne`` right after an ALU result in the same block read its flags
            pass
        else:
            _COMPARES[spec](self, pc, insn)
        target = pc + 1 + insn.off
        self.carry(pc, target)
        amount = self.plan.jump_refund.get(self.block_start)
        if amount:
            label = self.asm.label()
            self.refunds.append((label, amount, target))
        else:
            label = self.block_labels[target]
        self.asm.jcc(_JUMP_CONDITIONS[spec.op], label)

    def compare(self, pc: int, insn: Instruction) -> None:
        """Set the flags a conditional jump tests: ``test`` for JSET and for a compare
        with 0, else ``cmp``."""
        asm = self.asm
        spec = insn.spec
        width = spec.width
        dst = self.value_of(insn.dst, RAX)
        if spec.op is _JSET:
            if spec.form is _COND_IMM:
                asm.test_ri(dst, insn.imm, width)
            else:
                asm.test_rr(dst, self.value_of(insn.src, RCX), width)
        elif spec.form is _COND_IMM and insn.imm == 0:
            asm.test_rr(dst, dst, width)  # the flags of cmp dst, 0
        elif spec.form is _COND_IMM:
            asm.alu_ri(_CMP, dst, insn.imm, width)
        else:
            asm.alu_rr(_CMP, dst, self.value_of(insn.src, RCX), width)

    def helper_call(self, pc: int, insn: Instruction) -> None:
        """Call the Python helper callback with r1-r5 and the helper number in the context."""
        asm = self.asm
        if insn.spec.op is Op.CALLX:
            asm.store_r(CTX, layout.HELPER_NUMBER, self.value_of(insn.dst, RCX))
        else:
            asm.store_i(CTX, layout.HELPER_NUMBER, insn.imm)
        for index, reg in enumerate(CALLER_SAVED_EBPF):
            asm.store_r(CTX, layout.HELPER_ARGS + 8 * index, reg)
        asm.store_i(CTX, layout.TRAP_PC, pc)
        asm.store_r(CTX, layout.BUDGET_LEFT, METER)
        # align the native stack to 16 bytes for the C ABI, remembering the old rsp
        asm.mov_rr(RAX, RSP)
        asm.alu_ri(_AND, RSP, -16)
        asm.push(RAX)
        asm.push(RAX)
        asm.load(RAX, CTX, layout.CALLBACK)
        asm.push(CTX)
        asm.push(CTX)
        asm.call_r(RAX)
        asm.pop(CTX)
        asm.pop(CTX)
        asm.load(RSP, RSP, 0)
        for index, reg in enumerate(CALLER_SAVED_EBPF):
            asm.load(reg, CTX, layout.HELPER_ARGS + 8 * index)
        asm.load(METER, CTX, layout.BUDGET_LEFT)
        asm.test_rr(RAX, RAX, 32)
        asm.jcc(Cond.NE, self.stub(Status.CALLBACK, pc))
        asm.load(REGISTER_MAP[0], CTX, layout.HELPER_RESULT)

    def local_call(self, pc: int, insn: Instruction) -> None:
        """A bpf-to-bpf call: depth check, shadow frame, a fresh stack frame, native call.

        The depth is r10's: the call traps when r10 is already the deepest frame's.
        The shadow frame (return pc, and those of r6-r9 the callee may change) is
        where Python finds it when the meter hands the run over inside the callee;
        the callee's native return restores the same registers from it.
        """
        asm = self.asm
        stack_size = self.config.stack_size
        target = self.program.target_of(pc, insn)
        assert target is not None
        if target in self.inlined:
            self.call_in_place(pc, target)
            return
        effects = self.callee_effects[target]
        saved = self.saved_registers[pc + 1] = effects.writes
        asm.alu_rm(_CMP, FP, CTX, layout.FP_LIMIT)
        asm.jcc(Cond.BE, self.stub(TrapKind.CALL_DEPTH_EXCEEDED, pc))
        asm.mov_rr(RCX, FP)
        asm.alu_rm(_ADD, RCX, CTX, layout.SHADOW_DELTA)
        asm.store_i(RCX, 0, pc + 1)
        for ebpf in saved:
            asm.store_r(RCX, 8 * (ebpf - 5), REGISTER_MAP[ebpf])
        asm.alu_ri(_SUB, FP, stack_size)
        if effects.needs_frame_bottom:
            self.set_frame_bottom()
        asm.call(self.function_labels[target])
        asm.alu_ri(_ADD, FP, stack_size)
        if effects.needs_frame_bottom:
            self.set_frame_bottom()
        if saved:
            asm.mov_rr(RCX, FP)
            asm.alu_rm(_ADD, RCX, CTX, layout.SHADOW_DELTA)
            for ebpf in saved:
                asm.load(REGISTER_MAP[ebpf], RCX, 8 * (ebpf - 5))

    def call_in_place(self, pc: int, target: int) -> None:
        """A call of a callee written out here: the depth check, then its arithmetic,
        with those of r6-r9 it writes pushed and popped around it as a return would
        restore them.  Nothing in it can trap, call or check the meter (the caller's
        path paid for it), so it needs no frame and no shadow frame."""
        asm = self.asm
        asm.alu_rm(_CMP, FP, CTX, layout.FP_LIMIT)
        asm.jcc(Cond.BE, self.stub(TrapKind.CALL_DEPTH_EXCEEDED, pc))
        body = self.inline_bodies[target]
        saved = sorted({6, 7, 8, 9} & {r for _pc, i in body for r in written_registers(i)})
        for ebpf in saved:
            asm.push(REGISTER_MAP[ebpf])
        for callee_pc, callee_insn in body[:-1]:
            self.quotient = None  # value numbers follow the caller's registers only
            _ROWS[callee_insn.spec].lower(self, callee_pc, callee_insn)
        self.quotient = None
        for ebpf in reversed(saved):
            asm.pop(REGISTER_MAP[ebpf])

    def set_frame_bottom(self) -> None:
        """Make the stack slot's lowest address the current frame's, with its host
        address and the counts of the kinds of access the program has (plain stores,
        so a call loop carries no dependency through memory)."""
        asm = self.asm
        slot = STACK_BASE >> layout.SLOT_SHIFT
        asm.mov_rr(RAX, FP)
        asm.alu_rm(_SUB, RAX, CTX, layout.FRAME_LO_DELTA)
        asm.store_r(CTX, layout.table_field(layout.LOWEST, slot), RAX)
        asm.lea(RCX, FP, -self.frame_size)
        asm.store_r(CTX, layout.table_field(layout.HOST, slot), RCX)
        asm.load(RAX, CTX, layout.STACK_TOP_HOST)
        asm.alu_rr(_SUB, RAX, RCX)  # bytes from the frame's bottom to the stack's end
        for size, write in self.accesses:
            asm.lea(RCX, RAX, 1 - size)
            asm.store_r(CTX, layout.table_field(layout.COUNT[size, write], slot), RCX)

    def exit(self, pc: int, insn: Instruction) -> None:
        # every function, the main one included, is entered by a native call
        self.asm.ret()


_Lowering = Callable[[_Compiler, int, Instruction], None]

_LOWERINGS: dict[Op, _Lowering] = {
    Op.MOV: _Compiler.move,
    **{op: _Compiler.binary for op in _ALU_OPS},
    Op.MUL: _Compiler.multiply,
    **{op: _Compiler.shift for op in _SHIFTS},
    **{op: _Compiler.division for op in (Op.DIV, Op.SDIV, Op.MOD, Op.SMOD)},
    Op.NEG: _Compiler.neg,
    Op.MOVSX: _Compiler.movsx,
    Op.LE: _Compiler.byte_order,
    Op.BE: _Compiler.byte_order,
    Op.BSWAP: _Compiler.byte_order,
    Op.LDDW: _Compiler.lddw,
    Op.LOAD: _Compiler.load,
    Op.LOADSX: _Compiler.load,
    Op.STORE: _Compiler.store,
    **{op: _Compiler.atomic for op in ATOMIC_OPS},
    Op.LD_ABS: _Compiler.packet_load,
    Op.LD_IND: _Compiler.packet_load,
    Op.JA: _Compiler.jump,
    **{op: _Compiler.conditional for op in _JUMP_CONDITIONS},
    Op.CALL: _Compiler.helper_call,
    Op.CALLX: _Compiler.helper_call,
    Op.CALL_LOCAL: _Compiler.local_call,
    Op.EXIT: _Compiler.exit,
}
"""How each operation becomes machine code."""

LOWERED_OPS = frozenset(_LOWERINGS)

_DIVISIONS = frozenset({Op.DIV, Op.SDIV, Op.MOD, Op.SMOD})
_DIVISION_SPECS = frozenset(spec for spec in INSTRUCTIONS if spec.op in _DIVISIONS)
_KEEPS_SCRATCH = frozenset(
    {*_ALU_OPS, Op.MUL, Op.MOV, Op.NEG, Op.MOVSX, Op.LE, Op.BE, Op.BSWAP, Op.LDDW}
    | {*_SHIFTS, *_JUMP_CONDITIONS}
)
"""Operations whose code writes neither rax nor rcx, unless an operand is r10 or a shift
count is a register: a division's results survive them (see :meth:`_Compiler.after`)."""
_PLAIN_ACCESSES = ranges.PLAIN_ACCESS_OPS
_LOAD = Form.LOAD
_UNCHECKED, _CHECKED = False, True
"""What :meth:`_Compiler.in_copy` says of an instruction a loop copy may hold."""
_COPYABLE = frozenset(
    spec
    for spec in INSTRUCTIONS
    if spec.op in _PLAIN_ACCESSES
    or (spec.op in _KEEPS_SCRATCH and not (spec.op in _SHIFTS and spec.form is Form.ALU_REG))
)
"""Rows a loop copy without the meter may hold (:meth:`_Compiler.counted_copy`): none
traps but a checked access, calls out or writes rcx, unless an operand is r10."""
_MOST_TRIPS = 0x7FFF_FFFF
"""The most passes a copy without the meter is chosen for: products of the passes with
a block length or a step (each below 2**31) stay below 2**62."""
_NEVER_TESTS: dict[Op, Callable[[int], tuple[Cond, int]]] = {
    Op.JLT: lambda step: (Cond.A, -step),  # bound > 2**64 - step
    Op.JLE: lambda step: (Cond.A, -step - 1),  # bound > 2**64 - 1 - step
    Op.JGT: lambda step: (Cond.B, step - 1),  # bound < |step| - 1
    Op.JGE: lambda step: (Cond.B, step),  # bound < |step|
}
"""For a register bound: the jump (``cmp bound, imm``) taken when the counter may step
past the bound without ever meeting the comparison's end (:data:`~pybpf.verifier.counted.TRIPS`
says NEVER), by the magnitude of the step."""


def _fits_imm32(value: int) -> bool:
    return -(1 << 31) <= value < 1 << 31


def _walk_fits(walk: counted.Walk, last_pass: int) -> bool:
    """Whether the guard's code for ``walk`` (:meth:`_Compiler.walk_check`) can take its
    step and its first and last offsets as 32-bit immediates."""
    return all(map(_fits_imm32, (walk.step, walk.start, walk.start + last_pass * walk.step)))


def _copyable_counter(loop: counted.Counted) -> bool:
    """Whether :meth:`_Compiler.trips` computes the passes of ``loop``: a power-of-two
    step below 2**31, a bound other than r10, and, for a constant bound, one the
    counter can meet."""
    magnitude = abs(loop.step)
    if magnitude & (magnitude - 1) or magnitude >= 1 << 31 or loop.bound == 10:
        return False
    if loop.bound is None and loop.condition is not Op.JNE:
        return counted.TRIPS[loop.condition](0, loop.constant, loop.step) != counted.NEVER
    return True


RegionRule = Callable[[Regions, Instruction], int | None]
"""The predicted region of an instruction's ``dst`` after it, from those before it."""


def _copied_region(regions: Regions, insn: Instruction) -> int | None:
    return regions[insn.src]


def _sum_region(regions: Regions, insn: Instruction) -> int | None:
    here = regions[insn.dst]
    return regions[insn.src] if here is None else here  # a scalar plus a pointer


def _constant_region(regions: Regions, insn: Instruction) -> int | None:
    spec = insn.spec
    value = insn.imm & WIDTH_MASK[spec.width] if spec.op is Op.MOV else insn.imm
    return value >> layout.SLOT_SHIFT if 0 < value < 1 << 32 else None


def _no_region(regions: Regions, insn: Instruction) -> int | None:
    return None


_REGION_RULES: dict[tuple[Op, Form], RegionRule | None] = {
    (Op.MOV, Form.ALU_REG): _copied_region,
    (Op.MOV, Form.ALU_IMM): _constant_region,
    (Op.LDDW, Form.LDDW): _constant_region,
    (Op.ADD, Form.ALU_IMM): None,
    (Op.SUB, Form.ALU_IMM): None,
    (Op.SUB, Form.ALU_REG): None,
    (Op.ADD, Form.ALU_REG): _sum_region,
}
"""How the instructions that move pointers carry predictions (None: a pointer plus or
minus a scalar keeps its region); every other write forgets."""
_OTHER_WRITES: dict[str, Callable[[Instruction], tuple[int, ...]]] = {
    "src": lambda insn: (insn.src,),
    "r0": lambda insn: (0,),
    "callee": lambda insn: (0, 1, 2, 3, 4, 5),
}
"""Registers written by instructions without a ``dst`` result (atomic fetches, calls)."""


@dataclass(frozen=True)
class _Row:
    """What the compiler needs of one instruction-table row, looked up once per instruction."""

    lower: _Lowering
    keeps_scratch: bool
    """Its code leaves rax and rcx alone unless an operand is r10 (divisions set them)."""
    writes_dst: bool
    dst_region: RegionRule | None
    """For rows that write ``dst``: its predicted region after the instruction (None
    when it keeps the one before, and for rows that do not write ``dst``)."""
    copies_value: bool
    """A 64-bit register move: ``dst`` then holds the same value as ``src``."""
    other_writes: str | None
    """For rows that write registers other than ``dst``: a key of _OTHER_WRITES."""


def _row(spec: InsnSpec) -> _Row:
    op, form = spec.op, spec.form
    keeps = op in _DIVISIONS or (
        op in _KEEPS_SCRATCH and not (op in _SHIFTS and form is Form.ALU_REG)
    )
    if spec.writes_dst:
        rule = _REGION_RULES.get((op, form), _no_region)
        copies = op is Op.MOV and form is Form.ALU_REG and spec.width == 64
        return _Row(templates.templated(spec, _LOWERINGS[op]), keeps, True, rule, copies, None)
    others = None
    if spec.fetch:
        others = "r0" if op is Op.ATOMIC_CMPXCHG else "src"
    elif written_registers(Instruction(spec)):
        others = "callee" if op is Op.CALL_LOCAL else "r0"
    return _Row(templates.templated(spec, _LOWERINGS[op]), keeps, False, None, False, others)


def _unshift_masks(count: int) -> Callable[[Assembler, int], None]:
    return lambda asm, reg: asm.alu_ri(_AND, reg, (1 << 64 - count) - 1)


_UNSHIFTS: dict[tuple[Op, int], Callable[[Assembler, int], None]] = {
    (Op.RSH, 32): lambda asm, reg: asm.mov_rr(reg, reg, 32),
    **{(Op.RSH, count): _unshift_masks(count) for count in range(33, 64)},
    (Op.ARSH, 32): lambda asm, reg: asm.movsx_rr(reg, reg, 32),
    (Op.ARSH, 48): lambda asm, reg: asm.movsx_rr(reg, reg, 16),
    (Op.ARSH, 56): lambda asm, reg: asm.movsx_rr(reg, reg, 8),
}
"""``lsh r, n`` then ``rsh r, n`` or ``arsh r, n`` (64-bit) as one instruction: the
zero- or sign-extension of the low ``64 - n`` bits (clang's idiom for widening a
32-bit value), by (second operation, n)."""


def _shift_pair(lower: _Lowering) -> _Lowering:
    """The lowering of ``lsh r, n`` (64-bit), which writes the code of the pair when the
    next instruction, in the same block, shifts the same register back by ``n``
    (:data:`_UNSHIFTS`); that instruction's lowering (:func:`_unless_fused`) then
    writes nothing."""

    def lower_pair(compiler: _Compiler, pc: int, insn: Instruction) -> None:
        program = compiler.program
        after = pc + 1
        by_pc = program.by_pc
        following = by_pc[after] if after < len(by_pc) else None
        if (
            following is not None
            and following.spec in _RIGHT_SHIFTS
            and following.dst == insn.dst
            and following.imm & 63 == insn.imm & 63
            and after not in program.jump_targets
        ):
            unshift = _UNSHIFTS.get((following.spec.op, insn.imm & 63))
            if unshift is not None:
                unshift(compiler.asm, REGISTER_MAP[insn.dst])
                compiler.fused = after
                return
        lower(compiler, pc, insn)

    return lower_pair


def _unless_fused(lower: _Lowering) -> _Lowering:
    """A right shift's lowering, which writes nothing when :func:`_shift_pair` did."""

    def lower_unless_fused(compiler: _Compiler, pc: int, insn: Instruction) -> None:
        if compiler.fused != pc:
            lower(compiler, pc, insn)

    return lower_unless_fused


_ROWS: dict[InsnSpec, _Row] = {spec: _row(spec) for spec in INSTRUCTIONS if spec.op in _LOWERINGS}
"""Every lowered row of the instruction table (refused rows never reach the compiler)."""
_RIGHT_SHIFTS = frozenset(
    spec
    for spec in INSTRUCTIONS
    if spec.op in (Op.RSH, Op.ARSH) and spec.form is Form.ALU_IMM and spec.width == 64
)
for _spec, _found in list(_ROWS.items()):
    if _spec.op is Op.LSH and _spec.form is Form.ALU_IMM and _spec.width == 64:
        _ROWS[_spec] = replace(_found, lower=_shift_pair(_found.lower))
    elif _spec in _RIGHT_SHIFTS:
        _ROWS[_spec] = replace(_found, lower=_unless_fused(_found.lower))
_COMPARES: dict[InsnSpec, _Lowering] = {
    spec: templates.templated_compare(spec, _Compiler.compare)
    for spec in INSTRUCTIONS
    if spec.op in _JUMP_CONDITIONS
}
"""The compare of each conditional-jump row (see :meth:`_Compiler.conditional`)."""


def _same_result(before: Instruction | None, test: Instruction) -> bool:
    """Whether ``test`` compares the register ``before`` wrote, at its width."""
    return before is not None and before.dst == test.dst and before.spec.width == test.spec.width


def _join(first: Regions, second: Regions) -> Regions:
    """The prediction that holds on both ways in: where they disagree, none."""
    if first == second:
        return first
    return tuple(a if a == b else None for a, b in zip(first, second, strict=True))


def _predict(regions: Regions, reg: int, region: int | None) -> Regions:
    """``regions`` with ``reg``'s prediction replaced."""
    return (*regions[:reg], region, *regions[reg + 1 :])


def compile_program(
    program: Program, config: MachineConfig, every_offset: bool = False
) -> NativeCode:
    """Machine code for ``program`` under ``config``'s frame size and call depth
    (``every_offset``: with the code offset of every instruction, for a listing)."""
    return _Compiler(program, config, every_offset).compile()
