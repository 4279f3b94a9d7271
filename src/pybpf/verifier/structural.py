"""Structural checks every program passes at load, before any tier sees it.

They are the kernel's first pass (``check_subprogs`` and ``check_cfg`` in spirit):
the program is not empty, no instruction writes r10, every jump and local call
lands on the first slot of an instruction inside the program, jumps stay inside
their function, and no function can run off its end.  Opcode and register
validity are already guaranteed by the decoder.
"""

from __future__ import annotations

import bisect

from pybpf.errors import VerifierError
from pybpf.isa.fields import FRAME_POINTER
from pybpf.isa.instruction import written_registers
from pybpf.isa.table import Op
from pybpf.program import Program

MAX_INSTRUCTIONS = 1_000_000
"""The kernel's BPF_COMPLEXITY_LIMIT_INSNS, used here as a size limit."""

_ENDS_FLOW = frozenset({Op.EXIT, Op.JA})
"""Operations after which control never falls through to the next instruction."""


def _function_of(pc: int, entries: list[int]) -> int:
    """Entry of the function containing ``pc`` (``entries`` sorted, starting at 0)."""
    return entries[bisect.bisect_right(entries, pc) - 1]


def check_structure(program: Program) -> None:
    """Raise :class:`VerifierError` if the program is structurally unsafe to run."""
    if not program.instructions:
        raise VerifierError("the program is empty")
    if program.slot_count > MAX_INSTRUCTIONS:
        raise VerifierError(f"the program has {program.slot_count} instructions, over the limit")
    by_pc = program.by_pc
    entries = sorted(program.function_entries)
    for pc, insn, target in zip(program.pcs, program.instructions, program.targets, strict=True):
        if FRAME_POINTER in written_registers(insn):
            raise VerifierError(f"{insn.spec.mnemonic} writes r10, which is read-only", pc)
        if target is None:
            continue
        what = "call" if insn.spec.op is Op.CALL_LOCAL else "jump"
        if not 0 <= target < len(by_pc):
            raise VerifierError(f"{what} target {target} is outside the program", pc)
        if by_pc[target] is None:
            raise VerifierError(
                f"{what} target {target} is the second half of a 64-bit immediate load", pc
            )
        if what == "jump" and _function_of(target, entries) != _function_of(pc, entries):
            raise VerifierError(
                f"jump target {target} is in another function than the jump "
                "(functions are entered only by calls)",
                pc,
            )
    for end in [*entries[1:], program.slot_count]:
        last_pc = end - 1
        while by_pc[last_pc] is None:
            last_pc -= 1
        last = by_pc[last_pc]
        assert last is not None
        if last.spec.op not in _ENDS_FLOW:
            raise VerifierError(
                "the last instruction of a function must be exit or an unconditional jump "
                f"(found {last.spec.mnemonic})",
                last_pc,
            )
