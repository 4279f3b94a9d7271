"""Disassembler: canonical assembly, llvm-objdump pseudo-C, labels, and a sweep of every row."""

from __future__ import annotations

import pytest

from pybpf.asm import SYNTAXES, assemble, disassemble, format_instruction, label_names
from pybpf.asm.operands import OPERANDS
from pybpf.asm.pseudo_c import _FORMATTERS
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import FORM_FIELDS, INSTRUCTIONS, Form, InsnSpec, Op
from pybpf.program import Program


def one(text: str, syntax: str = "asm", hex_imm: bool = True) -> str:
    return disassemble(assemble(text), syntax, hex_imm=hex_imm)


CANONICAL = [
    ("add64 r1, 0x605", "add64 r1, 1541"),
    ("add r1, r2", "add64 r1, r2"),
    ("mov32 r0, 0xffffffff", "mov32 r0, -1"),
    ("ldxdw r0, [r1]", "ldxdw r0, [r1+0]"),
    ("stxdw [%r10 - 0x8], %r0", "stxdw [r10-8], r0"),
    ("stw [r1+2], 5", "stw [r1+2], 5"),
    ("swap16 r3", "bswap16 r3"),
    ("jeq64 r1, 3, +1", "jeq r1, 3, +1"),
    ("ja +0", "ja +0"),
    ("gotol -2", "ja32 -2"),
    ("lddw r0, 0x123456789abcdef0", "lddw r0, 0x123456789abcdef0"),
    ("lddw r0, -1", "lddw r0, 0xffffffffffffffff"),
    ("lddw r1, map_by_fd(3)", "lddw r1, map_by_fd(3)"),
    ("lddw r1, map_val_by_fd(3, 8)", "lddw r1, map_val_by_fd(3, 8)"),
    ("lddw r1, map_by_fd(0x500000003)", "lddw r1, map_by_fd(3, 5)"),
    ("lock add64 [r1], r2", "lock add [r1+0], r2"),
    ("lock fetch xor32 [r1-4], r2", "lock fetch xor32 [r1-4], r2"),
    ("call %r2", "callx r2"),
    ("call local -1", "call local -1"),
    ("call 1", "call 1"),
    ("call_btf 9", "call_btf 9"),
    ("ldabsw 0x10", "ldabsw 16"),
    ("ldindh r1, -4", "ldindh r1, -4"),
    ("movsx832 r1, r2", "movsx832 r1, r2"),
    ("exit", "exit"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_asm(text: str, expected: str) -> None:
    assert one(text) == expected


PSEUDO_C = [
    ("ldxh r0, [r1+2]", "r0 = *(u16 *)(r1 + 0x2)"),
    ("stxdw [r10-8], r0", "*(u64 *)(r10 - 0x8) = r0"),
    ("stw [r10-4], 5", "*(u32 *)(r10 - 0x4) = 0x5"),
    ("jgt r1, r2, +3", "if r1 > r2 goto +0x3"),
    ("jsle32 r1, -1, -2", "if w1 s<= -0x1 goto -0x2"),
    ("jset r1, 8, +1", "if r1 & 0x8 goto +0x1"),
    ("mov32 r0, r1", "w0 = w1"),
    ("add r0, 1", "r0 += 0x1"),
    ("neg r0", "r0 = -r0"),
    ("neg32 r0", "w0 = -w0"),
    ("be16 r0", "r0 = be16 r0"),
    ("le64 r0", "r0 = le64 r0"),
    ("bswap16 r0", "r0 = bswap16 r0"),
    ("lddw r0, 0x123456789abcdef0", "r0 = 0x123456789abcdef0 ll"),
    ("lddw r1, map_by_fd(3)", "r1 = map_by_fd(0x3) ll"),
    ("call 1", "call 0x1"),
    ("callx r5", "callx r5"),
    ("exit", "exit"),
    ("ja +2", "goto +0x2"),
    ("ja32 -1", "gotol -0x1"),
    ("lock add [r10-8], r1", "lock *(u64 *)(r10 - 0x8) += r1"),
    ("lock or32 [r10-8], r1", "lock *(u32 *)(r10 - 0x8) |= w1"),
    ("lock fetch add [r1], r0", "r0 = atomic_fetch_add((u64 *)(r1 + 0x0), r0)"),
    ("lock fetch and32 [r1], r3", "w3 = atomic_fetch_and((u32 *)(r1 + 0x0), w3)"),
    ("lock xchg [r1+8], r2", "r2 = xchg_64(r1 + 0x8, r2)"),
    ("lock xchg32 [r1+8], r2", "w2 = xchg32_32(r1 + 0x8, w2)"),
    ("lock cmpxchg [r1], r2", "r0 = cmpxchg_64(r1 + 0x0, r0, r2)"),
    ("lock cmpxchg32 [r1], r2", "w0 = cmpxchg32_32(r1 + 0x0, w0, w2)"),
    ("movsx864 r1, r2", "r1 = (s8)r2"),
    ("movsx1632 r1, r2", "w1 = (s16)w2"),
    ("ldxsb r0, [r1]", "r0 = *(s8 *)(r1 + 0x0)"),
    ("sdiv32 r0, r1", "w0 s/= w1"),
    ("smod r0, 3", "r0 s%= 0x3"),
    ("arsh r0, 2", "r0 s>>= 0x2"),
    ("ldabsb 0x10", "r0 = *(u8 *)skb[0x10]"),
    ("ldindw r2, 0", "r0 = *(u32 *)skb[r2]"),
    ("ldindw r2, 4", "r0 = *(u32 *)skb[r2 + 0x4]"),
]


@pytest.mark.parametrize(("text", "expected"), PSEUDO_C)
def test_pseudo_c(text: str, expected: str) -> None:
    assert one(text, "pseudo-c") == expected


# Lines of LLVM's own tests (llvm/test/MC/BPF/insn-unit*.s, run with
# llvm-objdump --no-print-imm-hex), paired with the same instruction in our syntax.
LLVM_DECIMAL = [
    ("ldxdw r8, [r3-30]", "r8 = *(u64 *)(r3 - 30)"),
    ("ldxh r6, [r1+8]", "r6 = *(u16 *)(r1 + 8)"),
    ("stxdw [r3-30], r10", "*(u64 *)(r3 - 30) = r10"),
    ("lock add [r3-30], r10", "lock *(u64 *)(r3 - 30) += r10"),
    ("ja +27", "goto +27"),
    ("jne r3, -1, +13", "if r3 != -1 goto +13"),
    ("jsge r5, 0x7fffffff, +9", "if r5 s>= 2147483647 goto +9"),
    ("jgt32 r1, 64, -1", "if w1 > 64 goto -1"),
    ("mul r2, -4", "r2 *= -4"),
    ("mov r9, 0xffffffff", "r9 = -1"),
    ("arsh r10, r0", "r10 s>>= r0"),
    ("be32 r2", "r2 = be32 r2"),
    ("neg32 r1", "w1 = -w1"),
    ("and32 r5, 0xff", "w5 &= 255"),
    ("lddw r9, 0x1ffffffff", "r9 = 8589934591 ll"),
    ("ldabsh 2", "r0 = *(u16 *)skb[2]"),
    ("ldindb r0, 0", "r0 = *(u8 *)skb[r0]"),
    ("call 1", "call 1"),
]


@pytest.mark.parametrize(("text", "expected"), LLVM_DECIMAL)
def test_pseudo_c_matches_llvm_decimal(text: str, expected: str) -> None:
    assert one(text, "pseudo-c", hex_imm=False) == expected


def test_every_operation_has_a_pseudo_c_printer() -> None:
    assert set(_FORMATTERS) == set(Op)


def test_every_form_has_a_template() -> None:
    assert set(OPERANDS) == set(Form)


def test_labels_for_jumps_calls_and_end() -> None:
    program = assemble(
        "call local fn\njeq r1, 0, done\nja +0\nmov r0, 1\ndone: exit\n"
        "fn: mov r0, 2\nja32 end\nend:"
    )
    assert label_names(program) == {3: "L3", 4: "L4", 5: "fn5", 7: "L7"}
    text = disassemble(program, labels=True)
    assert text.splitlines() == [
        "    call local fn5",
        "    jeq r1, 0, L4",
        "    ja L3",
        "L3:",
        "    mov64 r0, 1",
        "L4:",
        "    exit",
        "fn5:",
        "    mov64 r0, 2",
        "    ja32 L7",
        "L7:",
    ]
    assert assemble(text) == program


def test_targets_outside_the_program_or_inside_lddw_stay_numeric() -> None:
    program = assemble("ja +6\nja -3\nja +1\nlddw r0, 1\nexit")
    assert disassemble(program, labels=True).splitlines()[:3] == [
        "    ja +6",
        "    ja -3",
        "    ja +1",
    ]


def test_pseudo_c_with_labels() -> None:
    program = assemble("jeq r1, 0, out\nmov r0, 1\nout: exit")
    assert disassemble(program, "pseudo-c", labels=True).splitlines() == [
        "    if r1 == 0x0 goto L2",
        "    r0 = 0x1",
        "L2:",
        "    exit",
    ]


def test_format_instruction_on_its_own() -> None:
    insn = assemble("jeq r1, 2, +1").instructions[0]
    assert format_instruction(insn) == "jeq r1, 2, +1"
    assert format_instruction(insn, 4, labels={6: "x"}) == "jeq r1, 2, x"
    assert format_instruction(insn, syntax="pseudo-c", hex_imm=False) == "if r1 == 2 goto +1"
    assert SYNTAXES == ("asm", "pseudo-c")
    with pytest.raises(ValueError):
        format_instruction(insn, syntax="att")


def test_empty_program() -> None:
    assert disassemble(Program(())) == ""


def _sample(spec: InsnSpec) -> Instruction:
    """An instance of ``spec`` with every field it uses set to something non-trivial."""
    values = {"dst": 3, "src": 7, "off": -5, "imm": 2**64 - 2 if spec.slots == 2 else -9}
    used = {name: value for name, value in values.items() if name in FORM_FIELDS[spec.form]}
    return Instruction.make(spec, **used)


@pytest.mark.parametrize("spec", INSTRUCTIONS, ids=lambda spec: f"{spec.mnemonic}-{spec.form.name}")
def test_every_row_round_trips(spec: InsnSpec) -> None:
    program = Program((_sample(spec), _sample(spec)))
    for labels in (False, True):
        assert assemble(disassemble(program, labels=labels)).to_bytes() == program.to_bytes()
    assert disassemble(program, "pseudo-c")
