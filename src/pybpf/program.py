"""An immutable decoded program: its instructions, their slot indexes and jump targets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from pybpf.isa.instruction import SLOT_SIZE, Instruction, encode, iter_decode
from pybpf.isa.table import Form, Op

BLOCK_ENDING_OPS = frozenset(
    {
        Op.JA,
        Op.EXIT,
        Op.CALL,
        Op.CALLX,
        Op.CALL_LOCAL,
        Op.LD_ABS,
        Op.LD_IND,
        Op.JEQ,
        Op.JNE,
        Op.JGT,
        Op.JGE,
        Op.JLT,
        Op.JLE,
        Op.JSET,
        Op.JSGT,
        Op.JSGE,
        Op.JSLT,
        Op.JSLE,
    }
)
"""Operations that end a basic block: jumps, exits, and anything that may end the run
(calls, legacy packet loads), so a block, once entered, either runs to its end or
faults."""

Block = tuple[int, tuple[tuple[int, Instruction], ...]]
"""A basic block: its first slot index and its ``(pc, instruction)`` pairs."""


@dataclass(frozen=True)
class Program:
    """A sequence of decoded instructions.

    Instruction indexes (``pc``) count 8-byte slots, as the kernel does, so a 64-bit
    immediate load occupies two indexes and the one after it is two further on.
    """

    instructions: tuple[Instruction, ...]
    name: str = field(default="", compare=False)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, name: str = "") -> Program:
        """Decode little-endian bytecode; raises :class:`~pybpf.errors.DecodeError`."""
        return cls(tuple(insn for _pc, insn in iter_decode(data)), name)

    @classmethod
    def from_instructions(cls, instructions: Iterable[Instruction], name: str = "") -> Program:
        return cls(tuple(instructions), name)

    def to_bytes(self) -> bytes:
        return encode(self.instructions)

    @cached_property
    def pcs(self) -> tuple[int, ...]:
        """The slot index of every instruction, in order."""
        result = []
        pc = 0
        for insn in self.instructions:
            result.append(pc)
            pc += insn.slots
        return tuple(result)

    @cached_property
    def slot_count(self) -> int:
        return sum(insn.slots for insn in self.instructions)

    @cached_property
    def by_pc(self) -> tuple[Instruction | None, ...]:
        """Instruction starting at each slot; ``None`` for the second slot of a wide one."""
        slots: list[Instruction | None] = []
        for insn in self.instructions:
            slots.append(insn)
            slots.extend([None] * (insn.slots - 1))
        return tuple(slots)

    def __iter__(self) -> Iterator[tuple[int, Instruction]]:
        return iter(zip(self.pcs, self.instructions, strict=True))

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def byte_size(self) -> int:
        return self.slot_count * SLOT_SIZE

    def target_of(self, pc: int, insn: Instruction) -> int | None:
        """Slot index a jump or local call at ``pc`` transfers control to, if any."""
        form = insn.spec.form
        if form in (Form.JUMP, Form.COND_REG, Form.COND_IMM):
            return pc + 1 + insn.off
        if form is Form.JUMP_LONG or insn.spec.op is Op.CALL_LOCAL:
            return pc + 1 + insn.imm
        return None

    @cached_property
    def jump_targets(self) -> frozenset[int]:
        """Slot indexes some jump may land on."""
        targets = set()
        for pc, insn in self:
            target = self.target_of(pc, insn)
            if target is not None and insn.spec.op is not Op.CALL_LOCAL:
                targets.add(target)
        return frozenset(targets)

    @cached_property
    def function_entries(self) -> frozenset[int]:
        """Slot indexes of subprogram entries: 0 and every local call target."""
        entries = {0}
        for pc, insn in self:
            if insn.spec.op is Op.CALL_LOCAL:
                entries.add(pc + 1 + insn.imm)
        return frozenset(entries)

    @cached_property
    def functions(self) -> tuple[tuple[int, int], ...]:
        """``(entry, end)`` slot ranges of every function, the main program first."""
        entries = sorted(self.function_entries)
        return tuple(zip(entries, [*entries[1:], self.slot_count], strict=True))

    def basic_blocks(self, entry: int, end: int) -> list[Block]:
        """The basic blocks of the function occupying slots ``entry`` to ``end``."""
        leaders = {entry}
        members = [(pc, insn) for pc, insn in self if entry <= pc < end]
        for pc, insn in members:
            if insn.spec.op in BLOCK_ENDING_OPS:
                if pc + insn.slots < end:
                    leaders.add(pc + insn.slots)
                target = self.target_of(pc, insn)
                if target is not None and insn.spec.op is not Op.CALL_LOCAL:
                    leaders.add(target)
        starts: list[int] = []
        bodies: list[list[tuple[int, Instruction]]] = []
        for pc, insn in members:
            if pc in leaders:
                starts.append(pc)
                bodies.append([])
            bodies[-1].append((pc, insn))
        blocks: list[Block] = [
            (start, tuple(body)) for start, body in zip(starts, bodies, strict=True)
        ]
        return blocks
