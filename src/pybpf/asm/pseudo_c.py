"""One instruction in llvm-objdump's BPF pseudo-C syntax (output only).

Spellings follow LLVM's ``BPFInstrInfo.td`` and ``BPFInstPrinter``: ``w`` registers
for 32-bit ALU and JMP32, ``r0 = *(u16 *)(r1 + 0x2)``, ``lock *(u64 *)(r10 - 0x8)
+= r1``, ``r0 = atomic_fetch_add((u64 *)(r1 + 0x0), r0)``, ``r0 = 0x1 ll``.
Immediates are hexadecimal as in llvm-objdump's default (``--print-imm-hex``), or
decimal with ``hex_imm=False`` (``--no-print-imm-hex``).  Pseudo-sources of the
64-bit load, which llvm-objdump shows as relocations, print as ``map_by_fd(3)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pybpf.asm.operands import pseudo_args, pseudo_name
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import PSEUDO_NAMES, Form, InsnSpec, Op


@dataclass(frozen=True)
class _Context:
    """An instruction being printed, with what its operands need."""

    insn: Instruction
    pc: int
    labels: Mapping[int, str]
    hex_imm: bool

    @property
    def spec(self) -> InsnSpec:
        return self.insn.spec

    def num(self, value: int) -> str:
        if not self.hex_imm:
            return str(value)
        return f"-0x{-value:x}" if value < 0 else f"0x{value:x}"

    def reg(self, number: int) -> str:
        """A register named by the operation's width: ``w1`` for 32-bit, ``r1`` for 64."""
        return f"{'w' if self.spec.width == 32 else 'r'}{number}"

    def mem(self, base: int, off: int | None = None) -> str:
        off = self.insn.off if off is None else off
        sign = "-" if off < 0 else "+"
        return f"r{base} {sign} {self.num(abs(off))}"

    def rel(self, delta: int) -> str:
        label = self.labels.get(self.pc + 1 + delta)
        if label is not None:
            return label
        return ("+" if delta >= 0 else "") + self.num(delta)

    def bits(self) -> int:
        return 8 * self.spec.size


_ALU_OPERATORS: dict[Op, str] = {
    Op.ADD: "+=",
    Op.SUB: "-=",
    Op.MUL: "*=",
    Op.DIV: "/=",
    Op.SDIV: "s/=",
    Op.MOD: "%=",
    Op.SMOD: "s%=",
    Op.OR: "|=",
    Op.AND: "&=",
    Op.XOR: "^=",
    Op.LSH: "<<=",
    Op.RSH: ">>=",
    Op.ARSH: "s>>=",
    Op.MOV: "=",
}

_COMPARISONS: dict[Op, str] = {
    Op.JEQ: "==",
    Op.JNE: "!=",
    Op.JGT: ">",
    Op.JGE: ">=",
    Op.JLT: "<",
    Op.JLE: "<=",
    Op.JSGT: "s>",
    Op.JSGE: "s>=",
    Op.JSLT: "s<",
    Op.JSLE: "s<=",
    Op.JSET: "&",
}

_ATOMIC_OPERATORS: dict[Op, str] = {
    Op.ATOMIC_ADD: "+",
    Op.ATOMIC_OR: "|",
    Op.ATOMIC_AND: "&",
    Op.ATOMIC_XOR: "^",
}

_SWAP_FUNCTIONS: dict[tuple[Op, int], str] = {
    (Op.ATOMIC_XCHG, 64): "xchg_64",
    (Op.ATOMIC_XCHG, 32): "xchg32_32",
    (Op.ATOMIC_CMPXCHG, 64): "cmpxchg_64",
    (Op.ATOMIC_CMPXCHG, 32): "cmpxchg32_32",
}


def _alu(c: _Context) -> str:
    operand = c.num(c.insn.imm) if c.spec.form is Form.ALU_IMM else c.reg(c.insn.src)
    return f"{c.reg(c.insn.dst)} {_ALU_OPERATORS[c.spec.op]} {operand}"


def _movsx(c: _Context) -> str:
    return f"{c.reg(c.insn.dst)} = (s{c.bits()}){c.reg(c.insn.src)}"


def _neg(c: _Context) -> str:
    return f"{c.reg(c.insn.dst)} = -{c.reg(c.insn.dst)}"


def _byte_order(c: _Context) -> str:
    return f"r{c.insn.dst} = {c.spec.mnemonic} r{c.insn.dst}"


def _load(c: _Context) -> str:
    kind = "s" if c.spec.op is Op.LOADSX else "u"
    return f"r{c.insn.dst} = *({kind}{c.bits()} *)({c.mem(c.insn.src)})"


def _store(c: _Context) -> str:
    value = c.num(c.insn.imm) if c.spec.form is Form.STORE_IMM else f"r{c.insn.src}"
    return f"*(u{c.bits()} *)({c.mem(c.insn.dst)}) = {value}"


def _atomic(c: _Context) -> str:
    value = c.reg(c.insn.src)
    where = f"(u{c.bits()} *)({c.mem(c.insn.dst)})"
    if c.spec.fetch:
        name = c.spec.op.value.removeprefix("atomic_")
        return f"{value} = atomic_fetch_{name}({where}, {value})"
    return f"lock *{where} {_ATOMIC_OPERATORS[c.spec.op]}= {value}"


def _xchg(c: _Context) -> str:
    value = c.reg(c.insn.src)
    function = _SWAP_FUNCTIONS[c.spec.op, c.spec.width]
    return f"{value} = {function}({c.mem(c.insn.dst)}, {value})"


def _cmpxchg(c: _Context) -> str:
    r0 = c.reg(0)
    function = _SWAP_FUNCTIONS[c.spec.op, c.spec.width]
    return f"{r0} = {function}({c.mem(c.insn.dst)}, {r0}, {c.reg(c.insn.src)})"


def _lddw(c: _Context) -> str:
    value = c.insn.imm - (1 << 64) if c.insn.imm >= (1 << 63) else c.insn.imm
    return f"r{c.insn.dst} = {c.num(value)} ll"


def _pseudo(c: _Context) -> str:
    args = ", ".join(c.num(arg) for arg in pseudo_args(c.insn.imm))
    return f"r{c.insn.dst} = {pseudo_name(c.spec)}({args}) ll"


def _ld_abs(c: _Context) -> str:
    return f"r0 = *(u{c.bits()} *)skb[{c.num(c.insn.imm)}]"


def _ld_ind(c: _Context) -> str:
    index = c.mem(c.insn.src, c.insn.imm) if c.insn.imm else f"r{c.insn.src}"
    return f"r0 = *(u{c.bits()} *)skb[{index}]"


def _goto(c: _Context) -> str:
    if c.spec.form is Form.JUMP_LONG:
        return f"gotol {c.rel(c.insn.imm)}"
    return f"goto {c.rel(c.insn.off)}"


def _conditional(c: _Context) -> str:
    operand = c.num(c.insn.imm) if c.spec.form is Form.COND_IMM else c.reg(c.insn.src)
    comparison = _COMPARISONS[c.spec.op]
    return f"if {c.reg(c.insn.dst)} {comparison} {operand} goto {c.rel(c.insn.off)}"


def _call(c: _Context) -> str:
    label = c.labels.get(c.pc + 1 + c.insn.imm) if c.spec.op is Op.CALL_LOCAL else None
    return f"call {label or c.num(c.insn.imm)}"


_FORMATTERS: dict[Op, Callable[[_Context], str]] = {
    **dict.fromkeys(_ALU_OPERATORS, _alu),
    Op.MOVSX: _movsx,
    Op.NEG: _neg,
    **dict.fromkeys((Op.LE, Op.BE, Op.BSWAP), _byte_order),
    **dict.fromkeys((Op.LOAD, Op.LOADSX), _load),
    Op.STORE: _store,
    **dict.fromkeys(_ATOMIC_OPERATORS, _atomic),
    Op.ATOMIC_XCHG: _xchg,
    Op.ATOMIC_CMPXCHG: _cmpxchg,
    Op.LDDW: _lddw,
    **dict.fromkeys(PSEUDO_NAMES, _pseudo),
    Op.LD_ABS: _ld_abs,
    Op.LD_IND: _ld_ind,
    Op.JA: _goto,
    **dict.fromkeys(_COMPARISONS, _conditional),
    **dict.fromkeys((Op.CALL, Op.CALL_LOCAL, Op.CALL_BTF), _call),
    Op.CALLX: lambda c: f"callx r{c.insn.dst}",
    Op.EXIT: lambda c: "exit",
}
"""The pseudo-C printer of every semantic operation."""


def format_pseudo_c(
    insn: Instruction, pc: int = 0, labels: Mapping[int, str] | None = None, hex_imm: bool = True
) -> str:
    """``insn`` at slot ``pc`` as llvm-objdump prints it; jump targets named by ``labels``."""
    return _FORMATTERS[insn.spec.op](_Context(insn, pc, labels or {}, hex_imm))
