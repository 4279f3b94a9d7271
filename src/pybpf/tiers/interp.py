"""The reference interpreter: the tier that defines pybpf's semantics.

Each instruction is lowered once, at load, into a small Python closure that
performs it on a :class:`~pybpf.runtime.machine.Machine` and returns the index of
the next instruction; the run loop meters and dispatches.  Every check is on:
each load and store goes through the address space, each call through the
call-depth limit.  The arithmetic comes from :mod:`pybpf.isa.semantics`.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.errors import BudgetExceededError, CallDepthExceededError, VerifierError
from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import (
    ATOMIC_OPS,
    BINARY_OPS,
    BYTE_ORDER_OPS,
    CONDITIONS,
    MASK64,
    WIDTH_MASK,
    immediate_operand,
    movsx,
    neg,
    sign_extend,
    to_signed,
)
from pybpf.isa.table import Form, Op
from pybpf.program import Program
from pybpf.runtime.helpers import invoke_helper
from pybpf.runtime.machine import Frame, Machine, MachineConfig

EXIT = -1
"""Returned by a step instead of a next pc when the program has finished."""

Step = Callable[[Machine], int]
Observer = Callable[[int, Machine], None]
Lowering = Callable[[Instruction, int], Step]


def _alu(insn: Instruction, pc: int) -> Step:
    function = BINARY_OPS[insn.spec.op]
    width = insn.spec.width
    mask = WIDTH_MASK[width]
    dst, src, following = insn.dst, insn.src, pc + 1
    if insn.spec.form is Form.ALU_IMM:
        operand = immediate_operand(insn.imm, width)

        def alu_imm(m: Machine) -> int:
            regs = m.regs
            regs[dst] = function(regs[dst] & mask, operand, width)
            return following

        return alu_imm

    def alu_reg(m: Machine) -> int:
        regs = m.regs
        regs[dst] = function(regs[dst] & mask, regs[src] & mask, width)
        return following

    return alu_reg


def _movsx(insn: Instruction, pc: int) -> Step:
    size, width, dst, src, following = insn.spec.size, insn.spec.width, insn.dst, insn.src, pc + 1

    def step(m: Machine) -> int:
        m.regs[dst] = movsx(m.regs[src], size, width)
        return following

    return step


def _neg(insn: Instruction, pc: int) -> Step:
    width, dst, following = insn.spec.width, insn.dst, pc + 1
    mask = WIDTH_MASK[width]

    def step(m: Machine) -> int:
        m.regs[dst] = neg(m.regs[dst] & mask, width)
        return following

    return step


def _byte_order(insn: Instruction, pc: int) -> Step:
    convert = BYTE_ORDER_OPS[insn.spec.op]
    size, dst, following = insn.spec.size, insn.dst, pc + 1

    def step(m: Machine) -> int:
        m.regs[dst] = convert(m.regs[dst], size)
        return following

    return step


def _load(insn: Instruction, pc: int) -> Step:
    size, dst, src, off, following = insn.spec.size, insn.dst, insn.src, insn.off, pc + 1
    signed = insn.spec.op is Op.LOADSX

    def step(m: Machine) -> int:
        value = m.memory.load((m.regs[src] + off) & MASK64, size, pc)
        m.regs[dst] = sign_extend(value, size * 8) if signed else value
        return following

    return step


def _store(insn: Instruction, pc: int) -> Step:
    size, dst, src, off, following = insn.spec.size, insn.dst, insn.src, insn.off, pc + 1
    if insn.spec.form is Form.STORE_IMM:
        value = insn.imm

        def store_imm(m: Machine) -> int:
            m.memory.store((m.regs[dst] + off) & MASK64, size, value, pc)
            return following

        return store_imm

    def store_reg(m: Machine) -> int:
        m.memory.store((m.regs[dst] + off) & MASK64, size, m.regs[src], pc)
        return following

    return store_reg


def _atomic(insn: Instruction, pc: int) -> Step:
    spec = insn.spec
    size, width, fetch = spec.size, spec.width, spec.fetch
    mask = WIDTH_MASK[width]
    dst, src, off, following = insn.dst, insn.src, insn.off, pc + 1
    operation = ATOMIC_OPS[spec.op]

    def step(m: Machine) -> int:
        regs = m.regs
        operand = regs[src] & mask
        old = m.memory.read_modify_write(
            (regs[dst] + off) & MASK64, size, lambda value: operation(value, operand, width), pc
        )
        if fetch:
            regs[src] = old
        return following

    return step


def _cmpxchg(insn: Instruction, pc: int) -> Step:
    size, width = insn.spec.size, insn.spec.width
    mask = WIDTH_MASK[width]
    dst, src, off, following = insn.dst, insn.src, insn.off, pc + 1

    def step(m: Machine) -> int:
        regs = m.regs
        expected, replacement = regs[0] & mask, regs[src]
        # the access counts as a write whether or not the comparison succeeds
        regs[0] = m.memory.read_modify_write(
            (regs[dst] + off) & MASK64,
            size,
            lambda value: replacement if value == expected else value,
            pc,
        )
        return following

    return step


def _lddw(insn: Instruction, pc: int) -> Step:
    value, dst, following = insn.imm & MASK64, insn.dst, pc + 2

    def step(m: Machine) -> int:
        m.regs[dst] = value
        return following

    return step


def _packet_load(insn: Instruction, pc: int) -> Step:
    """Legacy LD_ABS / LD_IND: big-endian packet read into r0; out of bounds ends with 0."""
    size, imm, following = insn.spec.size, insn.imm, pc + 1
    src = insn.src if insn.spec.op is Op.LD_IND else None

    def step(m: Machine) -> int:
        offset = imm if src is None else to_signed(m.regs[src] + imm, 32)
        packet = m.packet
        if packet is None or offset < 0 or offset + size > len(packet):
            m.stop_value = 0
            return _finish(m)
        m.regs[0] = int.from_bytes(packet.buffer[offset : offset + size], "big")
        return following

    return step


def _finish(m: Machine) -> int:
    """End the whole program now (helper stop, failed packet load), r0 = stop value."""
    m.regs[0] = (m.stop_value or 0) & MASK64
    return EXIT


def _jump(insn: Instruction, pc: int) -> Step:
    target = pc + 1 + (insn.imm if insn.spec.form is Form.JUMP_LONG else insn.off)

    def step(m: Machine) -> int:
        return target

    return step


def _conditional(insn: Instruction, pc: int) -> Step:
    condition = CONDITIONS[insn.spec.op]
    width = insn.spec.width
    mask = WIDTH_MASK[width]
    dst, src, target, following = insn.dst, insn.src, pc + 1 + insn.off, pc + 1
    if insn.spec.form is Form.COND_IMM:
        operand = immediate_operand(insn.imm, width)

        def cond_imm(m: Machine) -> int:
            return target if condition(m.regs[dst] & mask, operand, width) else following

        return cond_imm

    def cond_reg(m: Machine) -> int:
        regs = m.regs
        return target if condition(regs[dst] & mask, regs[src] & mask, width) else following

    return cond_reg


def _helper_step(m: Machine, number: int, pc: int) -> int:
    """Run helper ``number`` for the call at ``pc``; returns the next step's pc."""
    regs = m.regs
    regs[0] = invoke_helper(m, number, pc, regs[1], regs[2], regs[3], regs[4], regs[5])
    if m.stop_value is not None:
        m.frames.clear()
        return _finish(m)
    return pc + 1


def _call(insn: Instruction, pc: int) -> Step:
    number = insn.imm

    def step(m: Machine) -> int:
        return _helper_step(m, number, pc)

    return step


def _callx(insn: Instruction, pc: int) -> Step:
    register = insn.dst

    def step(m: Machine) -> int:
        return _helper_step(m, m.regs[register], pc)

    return step


def _call_local(insn: Instruction, pc: int) -> Step:
    target = pc + 1 + insn.imm

    def step(m: Machine) -> int:
        if m.depth >= m.config.max_call_depth:
            raise CallDepthExceededError(pc, m.config.max_call_depth)
        m.push_frame(pc + 1)
        return target

    return step


def _exit(insn: Instruction, pc: int) -> Step:
    def step(m: Machine) -> int:
        return m.pop_frame() if m.frames else EXIT

    return step


LOWERINGS: dict[Op, Lowering] = {
    **{op: _alu for op in BINARY_OPS},
    Op.MOVSX: _movsx,
    Op.NEG: _neg,
    **{op: _byte_order for op in BYTE_ORDER_OPS},
    Op.LOAD: _load,
    Op.LOADSX: _load,
    Op.STORE: _store,
    **{op: _atomic for op in ATOMIC_OPS},
    Op.ATOMIC_CMPXCHG: _cmpxchg,
    Op.LDDW: _lddw,
    Op.LD_ABS: _packet_load,
    Op.LD_IND: _packet_load,
    Op.JA: _jump,
    **{op: _conditional for op in CONDITIONS},
    Op.CALL: _call,
    Op.CALLX: _callx,
    Op.CALL_LOCAL: _call_local,
    Op.EXIT: _exit,
}
"""How the interpreter performs each operation."""

_NEEDS_LOADER = "needs the object loader's relocations (maps, global data), not yet supported"

REFUSED: dict[Op, str] = {
    Op.LD_MAP_FD: _NEEDS_LOADER,
    Op.LD_MAP_VALUE_FD: _NEEDS_LOADER,
    Op.LD_MAP_IDX: _NEEDS_LOADER,
    Op.LD_MAP_VALUE_IDX: _NEEDS_LOADER,
    Op.LD_VAR_ADDR: "needs BTF variables, not yet supported",
    Op.LD_CODE_ADDR: "function addresses for callx are not supported: callx takes a helper number",
    Op.CALL_BTF: "kernel functions (kfuncs) called by BTF id are not supported",
}
"""Operations the interpreter does not run, and why."""


def check_supported(program: Program) -> None:
    """Refuse, naming the instruction, any operation no tier runs yet (:data:`REFUSED`)."""
    if all(spec.op not in REFUSED for spec in program.specs):
        return  # (asked of the rows the program uses, not of every instruction)
    for pc, insn in program:
        op = insn.spec.op
        if op in REFUSED:
            raise VerifierError(f"{insn.spec.mnemonic} ({op.value}) {REFUSED[op]}", pc)


class CompiledInterpreter:
    """A program lowered to interpreter steps, ready to run on machines."""

    def __init__(self, program: Program) -> None:
        check_supported(program)
        steps: list[Step] = [_unreachable] * program.slot_count
        for pc, insn in program:
            steps[pc] = LOWERINGS[insn.spec.op](insn, pc)
        self.program = program
        self.steps = steps

    def resume(self, m: Machine, pc: int, count: int, regs: list[int], frames: list[Frame]) -> int:
        """Finish a run another tier handed over at ``pc`` after ``count`` instructions.

        ``frames`` are the callers' saved states, outermost first; the stack bound
        follows from r10, as :meth:`Machine.push_frame` would have left it.
        """
        m.regs[:] = regs
        m.frames = frames
        m.stack.vm_start = regs[10] - m.config.stack_size
        return self.run(m, start_pc=pc, start_count=count)

    def listing(self) -> str:
        """What this tier runs: the instructions themselves."""
        from pybpf.asm import disassemble

        return disassemble(self.program)

    def run(
        self,
        m: Machine,
        observer: Observer | None = None,
        *,
        start_pc: int = 0,
        start_count: int = 0,
    ) -> int:
        """Run until the main function exits; returns r0.

        ``observer(pc, machine)``, if given, is called before every instruction.
        Other tiers hand a run over mid-way with ``start_pc`` and ``start_count``
        (instructions already executed), the machine holding the state at that point.
        """
        steps = self.steps
        budget = m.config.budget
        count = start_count
        pc = start_pc
        try:
            while pc >= 0:
                count += 1
                if count > budget:
                    count -= 1
                    raise BudgetExceededError(pc, budget)
                if observer is not None:
                    observer(pc, m)
                pc = steps[pc](m)
        finally:
            m.instructions = count
        return m.regs[0]


def _unreachable(m: Machine) -> int:  # the second slot of a 64-bit load: never a target
    raise AssertionError("control reached the second slot of a 64-bit immediate load")


class InterpreterTier:
    """The reference tier: available everywhere."""

    name = "interp"

    def unavailable_reason(self) -> str | None:
        return None

    def compile(self, program: Program, config: MachineConfig) -> CompiledInterpreter:
        return CompiledInterpreter(program)
