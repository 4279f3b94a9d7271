"""Golden-byte tests of the x86-64 encoder, cross-checked with the capstone disassembler.

Three layers:

* a hand-verified core set, each encoding worked out from the Intel SDM (Vol. 2,
  chapter 2 and the instruction pages) in the comment beside it;
* a systematic sweep of every form (all 16 registers in each register role,
  every base register with disp 0 / disp8 / disp32 / negative, with and without
  index) whose bytes are committed in ``tests/data/x86_golden.txt``, so any change
  to the bytes fails even where capstone is not installed;
* where capstone is installed, every sweep case and a seeded random sample are
  disassembled and compared, operand by operand, with what the case expects.

Regenerate the golden file (after checking every case against capstone) with
``python tests/test_x86_encoder.py --regen``.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable, Iterator
from enum import IntEnum
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pybpf.tiers.x86_64.encoder import (
    AluOp,
    Assembler,
    Cond,
    EncodingError,
    Label,
    Reg,
    ShiftOp,
    UnaryOp,
)

GOLDEN = Path(__file__).parent / "data" / "x86_golden.txt"

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = (
    Reg.RAX,
    Reg.RCX,
    Reg.RDX,
    Reg.RBX,
    Reg.RSP,
    Reg.RBP,
    Reg.RSI,
    Reg.RDI,
)
R8, R9, R10, R11, R12, R13, R14, R15 = (
    Reg.R8,
    Reg.R9,
    Reg.R10,
    Reg.R11,
    Reg.R12,
    Reg.R13,
    Reg.R14,
    Reg.R15,
)
REGS = list(Reg)
INDEXES = [r for r in Reg if r != RSP]
FEW = [RAX, RSP, RBP, RDI, R8, R12, R13, R15]
"""Registers that exercise each special case (REX.B, SIB/disp8 bases, byte registers)."""

# Register names as the SDM (and capstone) spell them, written out independently of the encoder.
NAMES = {
    64: "rax rcx rdx rbx rsp rbp rsi rdi r8 r9 r10 r11 r12 r13 r14 r15".split(),
    32: "eax ecx edx ebx esp ebp esi edi r8d r9d r10d r11d r12d r13d r14d r15d".split(),
    16: "ax cx dx bx sp bp si di r8w r9w r10w r11w r12w r13w r14w r15w".split(),
    8: "al cl dl bl spl bpl sil dil r8b r9b r10b r11b r12b r13b r14b r15b".split(),
}
CC = "o no b ae e ne be a s ns p np l ge le g".split()
PTR = {8: "byte ptr ", 16: "word ptr ", 32: "dword ptr ", 64: "qword ptr "}


# --- canonical text, shared by the expectations and the capstone side ----------------


def reg(r: int, size: int = 64) -> str:
    return NAMES[size][r]


def imm(value: int, bits: int) -> str:
    return f"{value & ((1 << bits) - 1):#x}"


def mem_text(bits: int | None, base: str, index: str | None, scale: int, disp: int) -> str:
    text = base
    if index is not None:
        text += f" + {index}*{scale}"
    if disp:
        text += f" + {disp:#x}" if disp > 0 else f" - {-disp:#x}"
    return f"{PTR[bits] if bits else ''}[{text}]"


def mem(bits: int | None, base: int, disp: int, index: int | None = None, scale: int = 1) -> str:
    return mem_text(bits, reg(base), None if index is None else reg(index), scale, disp)


# --- cases -------------------------------------------------------------------------


class Case(NamedTuple):
    id: str
    group: str
    emit: Callable[[Assembler], None]
    expect: tuple[str, ...]
    """Canonical text of each instruction the case emits, in order."""


def _fmt(arg: object) -> str:
    if isinstance(arg, Reg):
        return arg.name.lower()
    if isinstance(arg, IntEnum):
        return f"{type(arg).__name__}.{arg.name}"
    if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > 64:
        return hex(arg)
    return repr(arg)


def call(method: str, *args: Any, expect: str, **kwargs: Any) -> Case:
    """A case that is one encoder call."""
    text = ", ".join([*map(_fmt, args), *(f"{k}={_fmt(v)}" for k, v in kwargs.items())])

    def emit(asm: Assembler) -> None:
        getattr(asm, method)(*args, **kwargs)

    return Case(f"{method}({text})", method, emit, (expect,))


def mem_kwargs(index: int | None, scale: int) -> dict[str, Any]:
    return {} if index is None else {"index": index, "scale": scale}


def c_mov_rr(d: Reg, s: Reg, size: int) -> Case:
    return call("mov_rr", d, s, size, expect=f"mov {reg(d, size)}, {reg(s, size)}")


def c_mov_ri(d: Reg, value: int, size: int) -> Case:
    u = value & ((1 << size) - 1)
    if size == 32 or u < 1 << 32:
        text = f"mov {reg(d, 32)}, {imm(u, 32)}"  # B8+rd id zero-extends
    elif u >= (1 << 64) - (1 << 31):
        text = f"mov {reg(d)}, {imm(u, 64)}"  # REX.W C7 /0 id sign-extends
    else:
        text = f"movabs {reg(d)}, {imm(u, 64)}"
    return call("mov_ri", d, value, size, expect=text)


def c_zero(r: Reg) -> Case:
    return call("zero", r, expect=f"xor {reg(r, 32)}, {reg(r, 32)}")


def c_alu_rr(op: AluOp, d: Reg, s: Reg, size: int) -> Case:
    text = f"{op.name.lower()} {reg(d, size)}, {reg(s, size)}"
    return call("alu_rr", op, d, s, size, expect=text)


def c_alu_ri(op: AluOp, d: Reg, value: int, size: int) -> Case:
    text = f"{op.name.lower()} {reg(d, size)}, {imm(value, size)}"
    return call("alu_ri", op, d, value, size, expect=text)


def c_test_rr(a: Reg, b: Reg, size: int) -> Case:
    return call("test_rr", a, b, size, expect=f"test {reg(a, size)}, {reg(b, size)}")


def c_test_ri(r: Reg, value: int, size: int) -> Case:
    return call("test_ri", r, value, size, expect=f"test {reg(r, size)}, {imm(value, size)}")


def c_imul_rr(d: Reg, s: Reg, size: int) -> Case:
    return call("imul_rr", d, s, size, expect=f"imul {reg(d, size)}, {reg(s, size)}")


def c_imul_rri(d: Reg, s: Reg, value: int, size: int) -> Case:
    text = f"imul {reg(d, size)}, {reg(s, size)}, {imm(value, size)}"
    return call("imul_rri", d, s, value, size, expect=text)


def c_unary(op: UnaryOp, r: Reg, size: int) -> Case:
    return call("unary", op, r, size, expect=f"{op.name.lower()} {reg(r, size)}")


def c_shift_cl(op: ShiftOp, r: Reg, size: int) -> Case:
    return call("shift_cl", op, r, size, expect=f"{op.name.lower()} {reg(r, size)}, cl")


def c_shift_ri(op: ShiftOp, r: Reg, count: int, size: int) -> Case:
    text = f"{op.name.lower()} {reg(r, size)}, {imm(count, 8)}"
    return call("shift_ri", op, r, count, size, expect=text)


def c_movzx_rr(d: Reg, s: Reg, src_size: int) -> Case:
    if src_size == 32:
        text = f"mov {reg(d, 32)}, {reg(s, 32)}"
    else:
        text = f"movzx {reg(d, 32)}, {reg(s, src_size)}"
    return call("movzx_rr", d, s, src_size, expect=text)


def c_movsx_rr(d: Reg, s: Reg, src_size: int, size: int) -> Case:
    mnemonic = "movsxd" if src_size == 32 else "movsx"
    text = f"{mnemonic} {reg(d, size)}, {reg(s, src_size)}"
    return call("movsx_rr", d, s, src_size, size, expect=text)


def c_cmov(c: Cond, d: Reg, s: Reg, size: int) -> Case:
    text = f"cmov{CC[c]} {reg(d, size)}, {reg(s, size)}"
    return call("cmov", c, d, s, size, expect=text)


def c_setcc(c: Cond, r: Reg) -> Case:
    return call("setcc", c, r, expect=f"set{CC[c]} {reg(r, 8)}")


def c_one(method: str, mnemonic: str, r: Reg, size: int = 64) -> Case:
    """bswap / push / pop / call_r / jmp_r."""
    args: tuple[Any, ...] = (r, size) if method == "bswap" else (r,)
    return call(method, *args, expect=f"{mnemonic} {reg(r, size)}")


def c_load(
    d: Reg, base: Reg, disp: int, size: int, signed: bool, index: Reg | None = None, scale: int = 1
) -> Case:
    m = mem(size, base, disp, index, scale)
    if signed:
        mnemonic = {8: "movsx", 16: "movsx", 32: "movsxd", 64: "mov"}[size]
        text = f"{mnemonic} {reg(d)}, {m}"
    elif size <= 16:
        text = f"movzx {reg(d, 32)}, {m}"
    else:
        text = f"mov {reg(d, size)}, {m}"
    kw = mem_kwargs(index, scale)
    return call("load", d, base, disp, size, signed, expect=text, **kw)


def c_store_r(
    base: Reg, disp: int, src: Reg, size: int, index: Reg | None = None, scale: int = 1
) -> Case:
    text = f"mov {mem(size, base, disp, index, scale)}, {reg(src, size)}"
    return call("store_r", base, disp, src, size, expect=text, **mem_kwargs(index, scale))


def c_store_i(
    base: Reg, disp: int, value: int, size: int, index: Reg | None = None, scale: int = 1
) -> Case:
    text = f"mov {mem(size, base, disp, index, scale)}, {imm(value, size)}"
    return call("store_i", base, disp, value, size, expect=text, **mem_kwargs(index, scale))


def c_lea(
    d: Reg, base: Reg, disp: int, size: int, index: Reg | None = None, scale: int = 1
) -> Case:
    text = f"lea {reg(d, size)}, {mem(None, base, disp, index, scale)}"
    return call("lea", d, base, disp, size=size, expect=text, **mem_kwargs(index, scale))


def c_atomic(
    method: str, base: Reg, disp: int, src: Reg, size: int, op: AluOp | None = None
) -> Case:
    mnemonic = {
        "lock_xadd": "lock xadd",
        "lock_cmpxchg": "lock cmpxchg",
        "xchg_mr": "xchg",
        "lock_alu": f"lock {op.name.lower() if op is not None else ''}",
    }[method]
    text = f"{mnemonic} {mem(size, base, disp)}, {reg(src, size)}"
    args = (op, base, disp, src, size) if op is not None else (base, disp, src, size)
    return call(method, *args, expect=text)


def c_program(name: str, group: str, body: Callable[[Assembler], None], expect: list[str]) -> Case:
    """A case of several calls (branches need labels); expectations list every instruction."""
    return Case(name, group, body, tuple(expect))


# --- the sweep ---------------------------------------------------------------------

SIZES = (32, 64)
DISPS = (0, 8, -8, 0x7F, -0x80, 0x80, -0x81, 0x1234_5678, -0x8000_0000, 0x7FFF_FFFF)


def pairs() -> list[tuple[Reg, Reg]]:
    """Every register once as first and once as second operand, low/high mixed."""
    out = [(d, Reg((d + 5) % 16)) for d in REGS]
    out += [(Reg((s + 9) % 16), s) for s in REGS]
    return out


def branch_cases() -> Iterator[Case]:
    def back(c: Cond | None, pad: int) -> Callable[[Assembler], None]:
        def body(a: Assembler) -> None:
            top = a.label()
            a.bind(top)
            for _ in range(pad):
                a.nop()
            a.jmp(top) if c is None else a.jcc(c, top)

        return body

    def forward(c: Cond | None, pad: int, short: bool) -> Callable[[Assembler], None]:
        def body(a: Assembler) -> None:
            out = a.label()
            a.jmp(out, short) if c is None else a.jcc(c, out, short)
            for _ in range(pad):
                a.nop()
            a.bind(out)
            a.ret()

        return body

    for c in Cond:
        cc = f"j{CC[c]}"
        # rel8 backward: 70+cc cb; rel32 forward: 0F 80+cc cd; rel8 forward with short=True.
        yield c_program(f"jcc back rel8 {cc}", "jcc", back(c, 1), ["nop", f"{cc} 0x0"])
        size = 6
        yield c_program(
            f"jcc fwd rel32 {cc}",
            "jcc",
            forward(c, 2, False),
            [f"{cc} {size + 2:#x}"] + ["nop"] * 2 + ["ret"],
        )
        yield c_program(
            f"jcc fwd rel8 {cc}", "jcc", forward(c, 2, True), [f"{cc} 0x4", "nop", "nop", "ret"]
        )
    # The rel8/rel32 boundary: a backward branch reaches -128 with rel8, -129 needs rel32.
    for pad in (126, 127):
        yield c_program(
            f"jcc back pad {pad}", "jcc", back(Cond.NE, pad), ["nop"] * pad + ["jne 0x0"]
        )
        yield c_program(f"jmp back pad {pad}", "jmp", back(None, pad), ["nop"] * pad + ["jmp 0x0"])
    yield c_program("jmp back rel8", "jmp", back(None, 0), ["jmp 0x0"])
    yield c_program("jmp fwd rel32", "jmp", forward(None, 1, False), ["jmp 0x6", "nop", "ret"])
    yield c_program("jmp fwd rel8", "jmp", forward(None, 1, True), ["jmp 0x3", "nop", "ret"])
    yield c_program(
        "jmp fwd rel8 max", "jmp", forward(None, 127, True), ["jmp 0x81"] + ["nop"] * 127 + ["ret"]
    )

    def call_fwd(a: Assembler) -> None:
        f = a.label()
        a.call(f)
        a.int3()
        a.bind(f)
        a.ret()

    def call_back(a: Assembler) -> None:
        f = a.label()
        a.bind(f)
        a.ret()
        a.call(f)

    yield c_program("call fwd", "call", call_fwd, ["call 0x6", "int3", "ret"])
    yield c_program("call back", "call", call_back, ["ret", "call 0x0"])


def sweep() -> Iterator[Case]:
    for d in REGS:
        for s in REGS:
            yield c_mov_rr(d, s, 64)
    for d, s in pairs():
        yield c_mov_rr(d, s, 32)
    for d in REGS:
        for value in (0, 1, 0xFFFF_FFFF, -1, -0x8000_0000, 0x1_0000_0000, 0x8000_0000_0000_0000):
            yield c_mov_ri(d, value, 64)
        yield c_mov_ri(d, 0x1234_5678_9ABC_DEF0, 64)
        yield c_mov_ri(d, -1, 32)
        yield c_mov_ri(d, 0x8000_0000, 32)
        yield c_zero(d)
    # ALU: every register pair role for ADD; every op with a spread of registers.
    for op in AluOp:
        for size in SIZES:
            for d, s in pairs() if op == AluOp.ADD else pairs()[::4]:
                yield c_alu_rr(op, d, s, size)
            for d in REGS if op == AluOp.ADD else FEW:
                yield c_alu_ri(op, d, -2, size)  # imm8
                yield c_alu_ri(op, d, 0x1234, size)  # imm32 (and the rAX short form)
            for value in (0x7F, -0x80, 0x80, -0x81, 0x7FFF_FFFF, -0x8000_0000):
                yield c_alu_ri(op, RCX, value, size)
    for value in (0xFF, 0xFFFF_FFFF, 0x8000_0000):
        yield c_alu_ri(AluOp.AND, R11, value, 32)
        yield c_alu_ri(AluOp.ADD, RAX, value, 32)
    for size in SIZES:
        for a, b in pairs():
            yield c_test_rr(a, b, size)
            yield c_imul_rr(a, b, size)
        for d, s in pairs()[::3]:
            yield c_imul_rri(d, s, -3, size)
            yield c_imul_rri(d, s, 0x10000, size)
        for r in REGS:
            yield c_test_ri(r, 1, size)
            yield c_test_ri(r, -0x10, size)
        for uop in UnaryOp:
            for r in REGS if uop in (UnaryOp.DIV, UnaryOp.NEG) else FEW:
                yield c_unary(uop, r, size)
    yield call("cdq", expect="cdq")
    yield call("cqo", expect="cqo")
    for size in (16, 32, 64):
        for sop in ShiftOp:
            for r in REGS if sop == ShiftOp.SHL else (RCX, RSP, R13):
                yield c_shift_cl(sop, r, size)
                yield c_shift_ri(sop, r, 1, size)
                yield c_shift_ri(sop, r, size - 1, size)
        for r in REGS:
            yield c_shift_ri(ShiftOp.ROL, r, 8, size)
    for d, s in pairs():
        for src_size in (8, 16, 32):
            yield c_movzx_rr(d, s, src_size)
            yield c_movsx_rr(d, s, src_size, 64)
        for src_size in (8, 16):
            yield c_movsx_rr(d, s, src_size, 32)
    for r in REGS:  # byte registers: SPL..DIL need an empty REX, AH..BH are never produced
        yield c_movzx_rr(RAX, r, 8)
        yield c_movsx_rr(R9, r, 8, 64)
    for c in Cond:
        for size in SIZES:
            yield c_cmov(c, RAX, RCX, size)
            yield c_cmov(c, R12, R15, size)
        yield c_setcc(c, RAX)
        yield c_setcc(c, RDI)
        yield c_setcc(c, R13)
    for d, s in pairs():
        yield c_cmov(Cond.E, d, s, 64)
    for r in REGS:
        yield c_setcc(Cond.NE, r)
        yield c_one("bswap", "bswap", r, 32)
        yield c_one("bswap", "bswap", r, 64)
        yield c_one("push", "push", r)
        yield c_one("pop", "pop", r)
        yield c_one("call_r", "call", r)
        yield c_one("jmp_r", "jmp", r)
    yield call("ret", expect="ret")
    yield call("int3", expect="int3")
    yield call("nop", expect="nop")

    # Memory operands: every base with every displacement class, then base x index.
    for base in REGS:
        for i, disp in enumerate(DISPS):
            yield c_load(R10 if i % 2 else RAX, base, disp, 64, False)
        for index in INDEXES:
            scale = (1, 2, 4, 8)[(base + index) % 4]
            disp = (0, 0x10, -0x1000)[(base * 3 + index) % 3]
            yield c_load(Reg((base + index) % 16), base, disp, 64, False, index, scale)
    for scale in (1, 2, 4, 8):
        for base, index in ((RBP, RAX), (R13, R12), (RSP, R15), (R12, RBP), (RAX, R13)):
            yield c_load(RDX, base, 0, 64, False, index, scale)
            yield c_store_r(base, 0x40, R8, 32, index, scale)
            yield c_store_i(base, -0x200, 0x55, 8, index, scale)
            yield c_lea(R14, base, 0, 64, index, scale)
    # Each memory form: every register in the ModRM.reg role, every base register.
    for signed in (False, True):
        for size in (8, 16, 32, 64):
            for r in REGS:
                yield c_load(r, Reg(15 - r), 8 * r - 64, size, signed)
                yield c_load(R11, r, 0x100 * r - 0x800, size, signed)
    for size in (8, 16, 32, 64):
        for r in REGS:
            yield c_store_r(Reg(15 - r), 8 * r - 64, r, size)
            yield c_store_r(r, 0x100 * r - 0x800, R11, size)
            yield c_store_r(r, 0, RSI, size)
        bounds = {8: (-0x80, 0xFF), 16: (-0x8000, 0xFFFF), 32: (-0x8000_0000, 0xFFFF_FFFF)}
        for value in (*bounds.get(size, (-0x8000_0000, 0x7FFF_FFFF)), 1):
            for base in REGS if value == 1 else FEW:
                yield c_store_i(base, 0x10 * base - 0x80, value, size)
    for size in SIZES:
        for r in REGS:
            yield c_lea(r, Reg(15 - r), 8 * r - 64, size)
            yield c_lea(R9, r, 0x100 * r - 0x800, size)
    for size in SIZES:
        for r in REGS:
            for method in ("lock_xadd", "lock_cmpxchg", "xchg_mr"):
                yield c_atomic(method, Reg(15 - r), 8 * r - 64, r, size)
                yield c_atomic(method, r, 0, R12, size)
            for op in (AluOp.ADD, AluOp.AND, AluOp.OR, AluOp.XOR):
                yield c_atomic("lock_alu", Reg(15 - r), 8 * r, r, size, op)
        for op in (AluOp.ADC, AluOp.SBB, AluOp.SUB):
            yield c_atomic("lock_alu", RDI, 0, RAX, size, op)
    yield from branch_cases()


CASES: list[Case] = list({case.id: case for case in sweep()}.values())
"""The sweep, each case once (overlapping sweeps repeat a few)."""
GROUPS = sorted({case.group for case in CASES})


def encode(case: Case) -> bytes:
    asm = Assembler()
    case.emit(asm)
    return asm.finish()


def golden_line(case: Case, code: bytes) -> str:
    return f"{case.id} | {code.hex(' ')} | {'; '.join(case.expect)}"


def read_golden() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            case_id, code, expect = line.split(" | ")
            table[case_id] = (code, expect)
    return table


# --- golden bytes (no capstone needed) ----------------------------------------------


def test_golden_file_matches_the_sweep() -> None:
    ids = {case.id for case in CASES}
    assert sorted(ids - golden().keys()) == [], "cases missing from the golden file (regenerate)"
    assert sorted(golden().keys() - ids) == [], "golden lines without a case"


_GOLDEN_CACHE: dict[str, tuple[str, str]] = {}


def golden() -> dict[str, tuple[str, str]]:
    if not _GOLDEN_CACHE:
        _GOLDEN_CACHE.update(read_golden())
    return _GOLDEN_CACHE


@pytest.mark.parametrize("group", GROUPS)
def test_golden_bytes(group: str) -> None:
    wrong = []
    for case in CASES:
        if case.group == group:
            code, expect = golden()[case.id]
            got = encode(case).hex(" ")
            if got != code or expect != "; ".join(case.expect):
                wrong.append(f"{case.id}: {got}\n   golden: {code} | {expect}")
    assert not wrong, "\n".join(wrong[:20])


# --- hand-verified encodings ---------------------------------------------------------

SDM: list[tuple[str, Callable[[Assembler], None], str]] = [
    # REX.W 89 /r, ModRM 11 011(rbx) 000(rax)
    ("mov rax, rbx", lambda a: a.mov_rr(RAX, RBX), "48 89 d8"),
    # 89 /r with REX.R (r15) and REX.B (r8): ModRM 11 111 000
    ("mov r8d, r15d", lambda a: a.mov_rr(R8, R15, 32), "45 89 f8"),
    # REX.WRB 8B /r, mod 01 (r13 as base needs disp8) 100 101, disp8 0
    ("mov r12, [r13+0]", lambda a: a.load(R12, R13, 0), "4d 8b 65 00"),
    # 89 /r, ModRM 01 000 100 + SIB 00 100(none) 100(rsp), disp8 8
    ("mov [rsp+8], eax", lambda a: a.store_r(RSP, 8, RAX, 32), "89 44 24 08"),
    # REX.WRB 89 /r, ModRM 00 101 100 + SIB 24 (r12 base needs SIB)
    ("mov [r12], r13", lambda a: a.store_r(R12, 0, R13), "4d 89 2c 24"),
    # REX.WB 8B /r: ModRM 01 000 100, SIB 00 000(rax) 101(r13), disp8 0
    ("mov rax, [r13+rax]", lambda a: a.load(RAX, R13, 0, index=RAX), "49 8b 44 05 00"),
    # REX.WX 8D /r: ModRM 10 000 100, SIB 11 100(r12) 011(rbx), disp32
    (
        "lea rax, [rbx+r12*8+0x12345678]",
        lambda a: a.lea(RAX, RBX, 0x1234_5678, R12, 8),
        "4a 8d 84 e3 78 56 34 12",
    ),
    # 0F B6 /r, ModRM 00 000 111
    ("movzx eax, byte [rdi]", lambda a: a.load(RAX, RDI, 0, 8), "0f b6 07"),
    # REX.W 0F BF /r, ModRM 01 000 110, disp8 2
    ("movsx rax, word [rsi+2]", lambda a: a.load(RAX, RSI, 2, 16, True), "48 0f bf 46 02"),
    # REX.W 63 /r, ModRM 01 001 101, disp8 -4
    ("movsxd rcx, dword [rbp-4]", lambda a: a.load(RCX, RBP, -4, 32, True), "48 63 4d fc"),
    # REX (no bits) 88 /r: without it 110 would be DH, ModRM 00 110 000
    ("mov [rax], sil", lambda a: a.store_r(RAX, 0, RSI, 8), "40 88 30"),
    # 66 89 /r, ModRM 00 001 000
    ("mov [rax], cx", lambda a: a.store_r(RAX, 0, RCX, 16), "66 89 08"),
    # C7 /0 id, ModRM 01 000 100, SIB 10 001 011, disp8, imm32
    (
        "mov dword [rbx+rcx*4+0x10], 5",
        lambda a: a.store_i(RBX, 0x10, 5, 32, RCX, 4),
        "c7 44 8b 10 05 00 00 00",
    ),
    # REX.W C7 /0 id, sign-extended imm32
    ("mov qword [rax], -1", lambda a: a.store_i(RAX, 0, -1), "48 c7 00 ff ff ff ff"),
    # REX.W 83 /0 ib, ModRM 11 000 000
    ("add rax, 1", lambda a: a.alu_ri(AluOp.ADD, RAX, 1), "48 83 c0 01"),
    # REX.W 81 /5 id, ModRM 11 101 100
    ("sub rsp, 0x100", lambda a: a.alu_ri(AluOp.SUB, RSP, 0x100), "48 81 ec 00 01 00 00"),
    # 05 id ADD EAX, imm32 (one byte shorter than 81 /0)
    ("add eax, 0x12345678", lambda a: a.alu_ri(AluOp.ADD, RAX, 0x1234_5678, 32), "05 78 56 34 12"),
    # 83 /4 ib with imm8 -1: and r11d, 0xffffffff
    ("and r11d, -1", lambda a: a.alu_ri(AluOp.AND, R11, 0xFFFF_FFFF, 32), "41 83 e3 ff"),
    # 31 /r with REX.RB
    ("xor r15d, r15d", lambda a: a.zero(R15), "45 31 ff"),
    # REX.W 39 /r: cmp rcx, rdx
    ("cmp rcx, rdx", lambda a: a.alu_rr(AluOp.CMP, RCX, RDX), "48 39 d1"),
    # B8+rd id
    ("mov eax, 0x12345678", lambda a: a.mov_ri(RAX, 0x1234_5678), "b8 78 56 34 12"),
    ("mov r9d, 1", lambda a: a.mov_ri(R9, 1), "41 b9 01 00 00 00"),
    # REX.W C7 /0 id
    ("mov rax, -1", lambda a: a.mov_ri(RAX, -1), "48 c7 c0 ff ff ff ff"),
    # REX.WB B8+rd io
    (
        "movabs r10, 0x1122334455667788",
        lambda a: a.mov_ri(R10, 0x1122_3344_5566_7788),
        "49 ba 88 77 66 55 44 33 22 11",
    ),
    # F0 REX.W 0F C1 /r, ModRM 00 011 111
    ("lock xadd [rdi], rbx", lambda a: a.lock_xadd(RDI, 0, RBX), "f0 48 0f c1 1f"),
    # F0 0F B1 /r, ModRM 01 001 010, disp8 8
    ("lock cmpxchg [rdx+8], ecx", lambda a: a.lock_cmpxchg(RDX, 8, RCX, 32), "f0 0f b1 4a 08"),
    # REX.W 87 /r, ModRM 00 001 111
    ("xchg [rdi], rcx", lambda a: a.xchg_mr(RDI, 0, RCX), "48 87 0f"),
    # F0 REX.R 01 /r
    ("lock add [rax], r8d", lambda a: a.lock_alu(AluOp.ADD, RAX, 0, R8, 32), "f0 44 01 00"),
    # REX.W 0F AF /r, ModRM 11 000 001
    ("imul rax, rcx", lambda a: a.imul_rr(RAX, RCX), "48 0f af c1"),
    # REX.W F7 /6, /7, /3 and REX.WB F7 /2
    ("div rcx", lambda a: a.unary(UnaryOp.DIV, RCX), "48 f7 f1"),
    ("idiv r9d", lambda a: a.unary(UnaryOp.IDIV, R9, 32), "41 f7 f9"),
    ("neg rax", lambda a: a.unary(UnaryOp.NEG, RAX), "48 f7 d8"),
    ("not r15", lambda a: a.unary(UnaryOp.NOT, R15), "49 f7 d7"),
    ("cqo", lambda a: a.cqo(), "48 99"),
    ("cdq", lambda a: a.cdq(), "99"),
    # REX.W D3 /4; C1 /7 ib with REX.B; REX.W D1 /5
    ("shl rax, cl", lambda a: a.shift_cl(ShiftOp.SHL, RAX), "48 d3 e0"),
    ("sar r11d, 5", lambda a: a.shift_ri(ShiftOp.SAR, R11, 5, 32), "41 c1 fb 05"),
    ("shr rdx, 1", lambda a: a.shift_ri(ShiftOp.SHR, RDX, 1), "48 d1 ea"),
    # 66 [REX.B] C1 /0 ib: the 16-bit byte swap
    ("rol ax, 8", lambda a: a.shift_ri(ShiftOp.ROL, RAX, 8, 16), "66 c1 c0 08"),
    ("rol r9w, 8", lambda a: a.shift_ri(ShiftOp.ROL, R9, 8, 16), "66 41 c1 c1 08"),
    # 0F C8+rd; REX.WB 0F C8+4
    ("bswap eax", lambda a: a.bswap(RAX, 32), "0f c8"),
    ("bswap r12", lambda a: a.bswap(R12), "49 0f cc"),
    # REX 0F B6 /r (SIL needs REX); REX.R 0F B7 /r; REX.WB 0F BE /r; REX.W 63 /r
    ("movzx eax, sil", lambda a: a.movzx_rr(RAX, RSI, 8), "40 0f b6 c6"),
    ("movzx r8d, ax", lambda a: a.movzx_rr(R8, RAX, 16), "44 0f b7 c0"),
    ("movsx rax, r12b", lambda a: a.movsx_rr(RAX, R12, 8), "49 0f be c4"),
    ("movsxd rdx, eax", lambda a: a.movsx_rr(RDX, RAX, 32), "48 63 d0"),
    # REX.W 0F 44 /r; REX.WRB 0F 4C /r
    ("cmove rax, rcx", lambda a: a.cmov(Cond.E, RAX, RCX), "48 0f 44 c1"),
    ("cmovl r8, r9", lambda a: a.cmov(Cond.L, R8, R9), "4d 0f 4c c1"),
    # 0F 94 /0; REX 0F 95 (DIL); REX.B 0F 9F
    ("sete al", lambda a: a.setcc(Cond.E, RAX), "0f 94 c0"),
    ("setne dil", lambda a: a.setcc(Cond.NE, RDI), "40 0f 95 c7"),
    ("setg r12b", lambda a: a.setcc(Cond.G, R12), "41 0f 9f c4"),
    # REX.W 85 /r; A9 id (EAX short form); REX.WB F7 /0 id
    ("test rax, rax", lambda a: a.test_rr(RAX, RAX), "48 85 c0"),
    ("test eax, 0x10", lambda a: a.test_ri(RAX, 0x10, 32), "a9 10 00 00 00"),
    ("test r10, 1", lambda a: a.test_ri(R10, 1), "49 f7 c2 01 00 00 00"),
    # 50+rd, REX.B 50+4, REX.B 58+7
    ("push rbp", lambda a: a.push(RBP), "55"),
    ("push r12", lambda a: a.push(R12), "41 54"),
    ("pop r15", lambda a: a.pop(R15), "41 5f"),
    # REX.B FF /2; FF /4
    ("call r11", lambda a: a.call_r(R11), "41 ff d3"),
    ("jmp rax", lambda a: a.jmp_r(RAX), "ff e0"),
    ("ret", lambda a: a.ret(), "c3"),
    ("int3", lambda a: a.int3(), "cc"),
    ("nop", lambda a: a.nop(), "90"),
]


@pytest.mark.parametrize(("text", "emit", "expected"), SDM, ids=[row[0] for row in SDM])
def test_sdm_examples(text: str, emit: Callable[[Assembler], None], expected: str) -> None:
    asm = Assembler()
    emit(asm)
    assert asm.finish().hex(" ") == expected


# --- labels and branches ---------------------------------------------------------------


def test_forward_and_backward_branches() -> None:
    a = Assembler()
    top, out = a.label(), a.label()
    a.bind(top)
    a.jcc(Cond.E, out)  # 0: 0F 84 rel32 -> out
    a.jmp(top)  # 6: EB rel8 back to 0: rel = 0 - 8
    a.bind(out)  # 8
    a.ret()
    assert a.finish().hex(" ") == "0f 84 02 00 00 00 eb f8 c3"


def test_backward_rel8_boundary() -> None:
    for pad, expected in ((126, "75 80"), (127, "0f 85 7b ff ff ff")):
        a = Assembler()
        top = a.label()
        a.bind(top)
        for _ in range(pad):
            a.nop()
        a.jcc(Cond.NE, top)
        assert a.finish()[pad:].hex(" ") == expected


def test_short_forward_branch_out_of_range() -> None:
    a = Assembler()
    out = a.label()
    a.jmp(out, short=True)
    for _ in range(128):
        a.nop()
    a.bind(out)
    with pytest.raises(EncodingError):
        a.finish()


def test_unbound_label() -> None:
    a = Assembler()
    a.jcc(Cond.E, a.label())
    with pytest.raises(EncodingError):
        a.finish()


def test_label_errors() -> None:
    a = Assembler()
    lab = a.label()
    a.bind(lab)
    with pytest.raises(EncodingError):
        a.bind(lab)
    for bad in (Label(-1), Label(5)):
        with pytest.raises(EncodingError):
            a.jmp(bad)
        with pytest.raises(EncodingError):
            a.bind(bad)


def test_finish_is_repeatable_and_positions_are_final() -> None:
    a = Assembler()
    out = a.label()
    a.jmp(out)
    assert a.pos == 5
    a.bind(out)
    assert a.finish() == a.finish() == bytes.fromhex("e900000000")


# --- impossible encodings ---------------------------------------------------------------

IMPOSSIBLE: list[tuple[str, Callable[[Assembler], None]]] = [
    ("index rsp", lambda a: a.load(RAX, RBX, 0, index=RSP)),
    ("scale 3", lambda a: a.load(RAX, RBX, 0, index=RCX, scale=3)),
    ("disp > 32 bits", lambda a: a.load(RAX, RBX, 0x8000_0000)),
    ("disp < -2**31", lambda a: a.store_r(RAX, -0x8000_0001, RBX)),
    ("register 16", lambda a: a.mov_rr(16, RAX)),
    ("register -1", lambda a: a.mov_rr(RAX, -1)),
    ("base 16", lambda a: a.load(RAX, 16, 0)),
    ("index 16", lambda a: a.load(RAX, RBX, 0, index=16)),
    ("load size 24", lambda a: a.load(RAX, RBX, 0, 24)),
    ("mov size 16", lambda a: a.mov_rr(RAX, RBX, 16)),
    ("alu imm64", lambda a: a.alu_ri(AluOp.ADD, RAX, 0x8000_0000)),
    ("alu imm33", lambda a: a.alu_ri(AluOp.ADD, RAX, 0x1_0000_0000, 32)),
    ("alu bad op", lambda a: a.alu_rr(8, RAX, RBX)),  # type: ignore[arg-type]
    ("mov imm65", lambda a: a.mov_ri(RAX, 1 << 64)),
    ("mov32 imm33", lambda a: a.mov_ri(RAX, 1 << 32, 32)),
    ("store8 imm 256", lambda a: a.store_i(RAX, 0, 0x100, 8)),
    ("store64 imm 2**31", lambda a: a.store_i(RAX, 0, 0x8000_0000, 64)),
    ("shift 64", lambda a: a.shift_ri(ShiftOp.SHL, RAX, 64)),
    ("shift32 by 32", lambda a: a.shift_ri(ShiftOp.SHL, RAX, 32, 32)),
    ("shift -1", lambda a: a.shift_ri(ShiftOp.SHL, RAX, -1)),
    ("unary digit 0", lambda a: a.unary(0, RAX)),  # type: ignore[arg-type]
    ("shift digit 6", lambda a: a.shift_cl(6, RAX)),  # type: ignore[arg-type]
    ("lock cmp", lambda a: a.lock_alu(AluOp.CMP, RAX, 0, RBX)),
    ("cond 16", lambda a: a.setcc(16, RAX)),  # type: ignore[arg-type]
    ("movsx 32 to 32", lambda a: a.movsx_rr(RAX, RBX, 32, 32)),
    ("movzx from 64", lambda a: a.movzx_rr(RAX, RBX, 64)),
    ("imul imm64", lambda a: a.imul_rri(RAX, RBX, 1 << 31)),
    ("test imm64", lambda a: a.test_ri(RAX, -0x8000_0001)),
]


@pytest.mark.parametrize("emit", [row[1] for row in IMPOSSIBLE], ids=[row[0] for row in IMPOSSIBLE])
def test_impossible_encodings_raise(emit: Callable[[Assembler], None]) -> None:
    a = Assembler()
    a.nop()
    with pytest.raises(EncodingError) as info:
        emit(a)
    assert isinstance(info.value, ValueError)
    assert a.finish() == b"\x90", "nothing of a refused instruction may be emitted"


# --- capstone cross-check ---------------------------------------------------------------


@functools.cache
def disassembler() -> tuple[Any, Any]:
    """A capstone x86-64 decoder with operand details, and ``capstone.x86``."""
    capstone = pytest.importorskip("capstone")
    x86 = pytest.importorskip("capstone.x86")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md, x86


def capstone_text(code: bytes) -> list[str]:
    """Capstone's reading of ``code`` in the canonical text; every byte must decode."""
    md, x86 = disassembler()
    out = []
    used = 0
    for insn in md.disasm(code, 0):
        used += insn.size
        operands = []
        for op in insn.operands:
            if op.type == x86.X86_OP_REG:
                operands.append(insn.reg_name(op.reg))
            elif op.type == x86.X86_OP_IMM:
                operands.append(imm(op.imm, 8 * op.size))
            else:
                m = op.mem
                bits = None if insn.mnemonic == "lea" else 8 * op.size
                base = insn.reg_name(m.base)
                index = insn.reg_name(m.index) if m.index else None
                operands.append(mem_text(bits, base, index, m.scale, m.disp))
        out.append(f"{insn.mnemonic} {', '.join(operands)}".strip())
    assert used == len(code), f"capstone decoded {used} of {len(code)} bytes: {code.hex(' ')}"
    return out


@pytest.mark.parametrize("group", GROUPS)
def test_capstone_agrees(group: str) -> None:
    pytest.importorskip("capstone")
    wrong = [
        f"{case.id}: {encode(case).hex(' ')}\n   capstone {got}\n   expected {list(case.expect)}"
        for case in CASES
        if case.group == group
        for got in [capstone_text(encode(case))]
        if got != list(case.expect)
    ]
    assert not wrong, "\n".join(wrong[:20])


def random_cases(rng: random.Random, n: int) -> Iterator[Case]:
    """Random operands for every form: registers, bases, indexes, scales, disps, imms."""

    def r() -> Reg:
        return rng.choice(REGS)

    def disp() -> int:
        return rng.choice([0, rng.randint(-0x80, 0x7F), rng.randint(-(2**31), 2**31 - 1)])

    def index() -> tuple[Reg | None, int]:
        return rng.choice([None, rng.choice(INDEXES)]), rng.choice((1, 2, 4, 8))

    makers: list[Callable[[], Case]] = [
        lambda: c_mov_rr(r(), r(), rng.choice(SIZES)),
        lambda: c_mov_ri(r(), rng.randint(-(2**63), 2**64 - 1), 64),
        lambda: c_mov_ri(r(), rng.choice([rng.randint(-(2**31), 2**32 - 1), -1]), 64),
        lambda: c_alu_rr(rng.choice(list(AluOp)), r(), r(), rng.choice(SIZES)),
        lambda: c_alu_ri(rng.choice(list(AluOp)), r(), rng.randint(-(2**31), 2**31 - 1), 64),
        lambda: c_alu_ri(rng.choice(list(AluOp)), r(), rng.randint(-(2**31), 2**32 - 1), 32),
        lambda: c_alu_ri(rng.choice(list(AluOp)), r(), rng.randint(-0x80, 0x7F), rng.choice(SIZES)),
        lambda: c_imul_rri(r(), r(), rng.randint(-(2**31), 2**31 - 1), rng.choice(SIZES)),
        lambda: c_shift_ri(rng.choice(list(ShiftOp)), r(), rng.randint(0, 31), rng.choice(SIZES)),
        lambda: c_load(r(), r(), disp(), rng.choice((8, 16, 32, 64)), rng.random() < 0.5, *index()),
        lambda: c_store_r(r(), disp(), r(), rng.choice((8, 16, 32, 64)), *index()),
        lambda: c_store_i(r(), disp(), rng.randint(-0x80, 0xFF), rng.choice((8, 16, 32)), *index()),
        lambda: c_store_i(r(), disp(), rng.randint(-(2**31), 2**31 - 1), 64, *index()),
        lambda: c_lea(r(), r(), disp(), rng.choice(SIZES), *index()),
        lambda: c_cmov(rng.choice(list(Cond)), r(), r(), rng.choice(SIZES)),
        lambda: c_atomic(
            rng.choice(("lock_xadd", "lock_cmpxchg", "xchg_mr")), r(), disp(), r(), 64
        ),
    ]
    for _ in range(n):
        yield rng.choice(makers)()


def test_capstone_agrees_on_random_operands() -> None:
    pytest.importorskip("capstone")
    wrong = []
    for case in random_cases(random.Random(0x86), 3000):
        code = encode(case)
        if capstone_text(code) != list(case.expect):
            wrong.append(f"{case.id}: {code.hex(' ')} -> {capstone_text(code)}")
    assert not wrong, "\n".join(wrong[:20])


def regenerate() -> None:
    """Write the golden file, after every case has been checked against capstone."""
    bad = [case.id for case in CASES if capstone_text(encode(case)) != list(case.expect)]
    if bad:
        sys.exit(f"capstone disagrees with {len(bad)} cases, e.g. {bad[:5]}")
    header = [
        "# Golden x86-64 encodings of pybpf.tiers.x86_64.encoder, one case per line:",
        "#   encoder call | bytes | the instruction(s) capstone reads back",
        "# Regenerate with: python tests/test_x86_encoder.py --regen",
    ]
    lines = [golden_line(case, encode(case)) for case in CASES]
    GOLDEN.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {len(lines)} cases to {GOLDEN}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        regenerate()
    else:
        sys.exit("usage: python tests/test_x86_encoder.py --regen")


def test_memory_operand_alu_forms() -> None:
    """OP r, m and OP m, imm, hand-checked against the SDM (03 /r, 3B /r, 83 /5 ib, 81 /0 id)."""
    from pybpf.tiers.x86_64.encoder import AluOp, Assembler, Reg

    cases = [
        (lambda a: a.alu_rm(AluOp.CMP, Reg.RAX, Reg.RDX, 8), "48 3b 42 08"),
        (lambda a: a.alu_rm(AluOp.ADD, Reg.R9, Reg.R11, 0x100, 32), "45 03 8b 00 01 00 00"),
        (lambda a: a.alu_rm(AluOp.SUB, Reg.RCX, Reg.R13, 0), "49 2b 4d 00"),
        (lambda a: a.alu_mi(AluOp.SUB, Reg.R11, 16, 5), "49 83 6b 10 05"),
        (lambda a: a.alu_mi(AluOp.ADD, Reg.RSP, 0, 1000, 32), "81 04 24 e8 03 00 00"),
        (lambda a: a.alu_mi(AluOp.CMP, Reg.R12, -8, -1), "49 83 7c 24 f8 ff"),
    ]
    for emit, expected in cases:
        asm = Assembler()
        emit(asm)
        assert asm.finish().hex(" ") == expected


def test_memory_operand_alu_with_index() -> None:
    """OP r, [base + index*8 + disp32]: the region-table operand the JIT uses (SDM 3B /r)."""
    from pybpf.tiers.x86_64.encoder import AluOp, Assembler, Reg

    asm = Assembler()
    asm.alu_rm(AluOp.CMP, Reg.RAX, Reg.R11, 0x80, index=Reg.RDX, scale=8)
    asm.alu_rm(AluOp.ADD, Reg.RAX, Reg.R11, 0x300, index=Reg.RDX, scale=8)
    assert asm.finish().hex(" ") == "49 3b 84 d3 80 00 00 00 49 03 84 d3 00 03 00 00"


def test_alignment_pads_with_the_recommended_nops() -> None:
    """NOP of 1-9 bytes: 90, 66 90, 0F 1F /0 with each ModRM/SIB/displacement form."""
    from pybpf.tiers.x86_64.encoder import Assembler, EncodingError

    expected = {
        1: "90",
        2: "66 90",
        3: "0f 1f 00",
        4: "0f 1f 40 00",
        5: "0f 1f 44 00 00",
        6: "66 0f 1f 44 00 00",
        7: "0f 1f 80 00 00 00 00",
        8: "0f 1f 84 00 00 00 00 00",
        9: "66 0f 1f 84 00 00 00 00 00",
    }
    for size, code in expected.items():
        asm = Assembler()
        asm.buf += bytes(16 - size)
        asm.align(16)
        assert asm.finish()[16 - size :].hex(" ") == code
    asm = Assembler()
    asm.align(64)
    assert asm.finish() == b""  # already aligned
    with pytest.raises(EncodingError, match="power of two"):
        Assembler().align(24)


def test_capstone_reads_every_padding_as_nops() -> None:
    md, _x86 = disassembler()
    from pybpf.tiers.x86_64.encoder import Assembler

    for start in range(64):
        asm = Assembler()
        asm.buf += b"\x90" * start
        asm.align(64)
        code = asm.finish()
        assert len(code) == (64 if start else 0)
        decoded = list(md.disasm(code[start:], 0))
        assert sum(insn.size for insn in decoded) == len(code) - start, start
        assert {insn.mnemonic for insn in decoded} <= {"nop"}, start
        assert all(insn.size <= 9 for insn in decoded)
