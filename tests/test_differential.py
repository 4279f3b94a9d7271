"""Every tier equals the reference interpreter on generated programs and inputs.

Programs are drawn from the instruction table's rows: arithmetic with edge-case
operands, loads, stores and atomics at valid and invalid addresses, jumps (some
backward, so the meter trips), helper calls and local calls.  Each tier must give
the same r0, instruction count and input memory afterwards, and the same error type
and instruction index (for budget traps only the type must match).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf import VM, BpfError, ExecutionError, Program, conformance_helpers, disassemble
from pybpf.errors import BudgetExceededError
from pybpf.isa import INSTRUCTIONS, Form, Instruction, Op
from pybpf.tiers import available_tiers

TIERS = [name for name, reason in available_tiers() if reason is None and name != "interp"]
EXAMPLES = int(os.environ.get("PYBPF_FUZZ_EXAMPLES", "150"))

EDGE_IMMEDIATES = [0, 1, -1, 2, 7, 31, 32, 63, 64, -(2**31), 2**31 - 1, 0x7F, 0x80, 0xFF]
EDGE_VALUES = [0, 1, 2**63, 2**64 - 1, 2**32 - 1, 2**31, 0x8000, 0xFF, 0x1234_5678_9ABC_DEF0]

ALU_ROWS = [r for r in INSTRUCTIONS if r.form in (Form.ALU_IMM, Form.ALU_REG, Form.UNARY)]
LOAD_ROWS = [r for r in INSTRUCTIONS if r.form is Form.LOAD]
STORE_ROWS = [r for r in INSTRUCTIONS if r.form in (Form.STORE_IMM, Form.STORE_REG)]
COND_ROWS = [r for r in INSTRUCTIONS if r.form in (Form.COND_IMM, Form.COND_REG)]
PACKET_ROWS = [r for r in INSTRUCTIONS if r.op in (Op.LD_ABS, Op.LD_IND)]
ATOMIC_ROWS = [r for r in INSTRUCTIONS if r.op.name.startswith("ATOMIC")]
DIVISION_ROWS = [r for r in ALU_ROWS if r.op in (Op.DIV, Op.MOD, Op.SDIV, Op.SMOD)]
MOV64 = next(r for r in INSTRUCTIONS if r.mnemonic == "mov64" and r.form is Form.ALU_REG)
ADD64 = next(r for r in INSTRUCTIONS if r.mnemonic == "add64" and r.form is Form.ALU_REG)
LDDW = next(r for r in INSTRUCTIONS if r.op is Op.LDDW)
EXIT = next(r for r in INSTRUCTIONS if r.op is Op.EXIT)
JA = next(r for r in INSTRUCTIONS if r.op is Op.JA and r.form is Form.JUMP)
CALL = next(r for r in INSTRUCTIONS if r.op is Op.CALL)
CALL_LOCAL = next(r for r in INSTRUCTIONS if r.op is Op.CALL_LOCAL)
CALLX = next(r for r in INSTRUCTIONS if r.op is Op.CALLX)
JA32 = next(r for r in INSTRUCTIONS if r.op is Op.JA and r.form is Form.JUMP_LONG)

immediates = st.one_of(st.sampled_from(EDGE_IMMEDIATES), st.integers(-(2**31), 2**31 - 1))
writable_regs = st.integers(0, 9)
any_reg = st.integers(0, 10)


@st.composite
def memory_operand(draw: st.DrawFn) -> tuple[int, int]:
    """A base register and offset: mostly in the stack frame or the input, some wild."""
    kind = draw(st.sampled_from(["stack", "stack", "input", "input", "derived", "wild"]))
    if kind == "stack":
        return 10, draw(st.integers(-520, 8))
    if kind == "input":
        return 1, draw(st.integers(-4, 40))
    if kind == "derived":  # r6-r9 hold copies of r1 or r10 after "pointer" items
        return draw(st.integers(6, 9)), draw(st.integers(-520, 40))
    return draw(any_reg), draw(st.integers(-(2**15), 2**15 - 1))


JUMP_FORMS = (Form.JUMP, Form.COND_IMM, Form.COND_REG)
CALLEE = -1
"""Jump target marking the local call to the callee."""

Item = tuple[Instruction, int | None]
"""An instruction and, for jumps and calls, the index of the item it targets."""


@st.composite
def body_item(draw: st.DrawFn, index: int, first: int, last: int) -> Item:
    """An instruction at item ``index`` of a function whose items run ``first``..``last``."""
    kind = draw(
        st.sampled_from(
            ["alu"] * 6
            + ["load"] * 2
            + ["store"] * 2
            + ["atomic", "cond", "cond", "lddw", "packet", "call", "callx", "ja", "ja32"]
            + ["pointer", "pointer", "divmod", "divmod"]
        )
    )
    if kind == "pointer":  # copies and sums of pointers: the x86-64 region predictions
        source = draw(st.sampled_from([1, 10, 6, 7, 8, 9]))
        spec = draw(st.sampled_from([MOV64, MOV64, ADD64]))
        return Instruction.make(spec, dst=draw(st.integers(6, 9)), src=source), None
    if kind == "divmod":  # few registers, so the same division recurs (its result reused)
        spec = draw(st.sampled_from(DIVISION_ROWS))
        imm = draw(st.sampled_from([0, 1, -1, 3, 7])) if spec.form is Form.ALU_IMM else 0
        regs = st.integers(6, 8)
        return Instruction.make(spec, dst=draw(regs), src=draw(regs), imm=imm), None
    if kind == "alu":
        spec = draw(st.sampled_from(ALU_ROWS))
        imm = draw(immediates) if spec.form is Form.ALU_IMM else 0
        return Instruction.make(spec, dst=draw(writable_regs), src=draw(any_reg), imm=imm), None
    if kind == "lddw":
        value = draw(st.one_of(st.sampled_from(EDGE_VALUES), st.integers(0, 2**64 - 1)))
        return Instruction.make(LDDW, dst=draw(writable_regs), imm=value), None
    if kind in ("load", "store", "atomic"):
        rows = {"load": LOAD_ROWS, "store": STORE_ROWS, "atomic": ATOMIC_ROWS}[kind]
        spec = draw(st.sampled_from(rows))
        base, off = draw(memory_operand())
        if kind == "load":
            return Instruction.make(spec, dst=draw(writable_regs), src=base, off=off), None
        src = draw(writable_regs if kind == "atomic" else any_reg)
        return Instruction.make(spec, dst=base, src=src, off=off, imm=draw(immediates)), None
    if kind == "packet":
        spec = draw(st.sampled_from(PACKET_ROWS))
        return Instruction.make(spec, src=draw(any_reg), imm=draw(st.integers(-2, 40))), None
    if kind == "call":
        return Instruction.make(CALL, imm=draw(st.sampled_from([0, 2, 3, 99]))), None
    if kind == "callx":  # the helper number comes from a register, whatever it holds
        return Instruction.make(CALLX, dst=draw(any_reg)), None
    # forward to any later item of the function (its exit included), or sometimes
    # backward, which loops until the budget runs out
    target = draw(st.one_of(st.integers(index + 1, last), st.integers(first, index)))
    if kind in ("ja", "ja32"):
        return Instruction.make(JA if kind == "ja" else JA32), max(target, index + 1)
    spec = draw(st.sampled_from(COND_ROWS))
    imm = draw(immediates) if spec.form is Form.COND_IMM else 0
    return Instruction.make(spec, dst=draw(any_reg), src=draw(any_reg), imm=imm), target


@st.composite
def function_items(draw: st.DrawFn, first: int, length: int) -> list[Item]:
    """``length`` body items starting at item ``first``, then an exit."""
    last = first + length
    items = [draw(body_item(first + n, first, last)) for n in range(length)]
    return [*items, (Instruction.make(EXIT), None)]


@st.composite
def programs(draw: st.DrawFn) -> Program:
    """Register setup, a main function, and optionally a local function it calls."""
    items: list[Item] = [
        (Instruction.make(LDDW, dst=reg, imm=draw(st.sampled_from(EDGE_VALUES))), None)
        for reg in (0, 3, 4, 5, 6, 7, 8, 9)
    ]
    main = draw(function_items(len(items), draw(st.integers(1, 24))))
    if draw(st.booleans()):
        # replace one body item of main with a call to the function after main
        where = draw(st.integers(len(items), len(items) + len(main) - 2))
        main[where - len(items)] = (Instruction.make(CALL_LOCAL), CALLEE)
        items += main
        callee_entry = len(items)
        items += draw(function_items(callee_entry, draw(st.integers(1, 8))))
    else:
        items += main
        callee_entry = len(items)
    return _layout(items, callee_entry)


def _layout(items: list[Item], callee_entry: int) -> Program:
    """Resolve item targets into slot offsets."""
    positions = []
    pc = 0
    for insn, _target in items:
        positions.append(pc)
        pc += insn.slots
    resolved = []
    for index, (insn, target) in enumerate(items):
        if target is not None:
            goal = positions[callee_entry if target == CALLEE else target]
            delta = goal - positions[index] - 1
            if target == CALLEE or insn.spec.form is Form.JUMP_LONG:
                insn = Instruction(insn.spec, insn.dst, insn.src, insn.off, delta)
            else:
                insn = Instruction(insn.spec, insn.dst, insn.src, delta, insn.imm)
        resolved.append(insn)
    return Program(tuple(resolved))


def outcome(program: Program, tier: str, mem: bytes) -> tuple[object, ...]:
    data = bytearray(mem)
    try:
        vm = VM(program, tier=tier, helpers=conformance_helpers(), budget=300)
        result = vm.execute(data)
    except BudgetExceededError:
        return ("budget",)
    except ExecutionError as error:
        return (type(error).__name__, error.pc, bytes(data))
    except BpfError as error:
        return (type(error).__name__, getattr(error, "pc", None))
    return ("ok", result.r0, result.instructions, bytes(data))


@pytest.mark.skipif(not TIERS, reason="only the interpreter is available")
@pytest.mark.parametrize("tier", TIERS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs(), mem=st.binary(min_size=0, max_size=48))
def test_tier_matches_interpreter(tier: str, program: Program, mem: bytes) -> None:
    expected = outcome(program, "interp", mem)
    listing = disassemble(program)
    assert outcome(program, tier, mem) == expected, f"{listing}\nmem={mem.hex()}"
