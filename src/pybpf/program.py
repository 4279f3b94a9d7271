"""An immutable decoded program: its instructions, their slot indexes and jump targets."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import compress
from operator import attrgetter

from pybpf.isa.instruction import SLOT_SIZE, Instruction, encode, iter_decode
from pybpf.isa.table import CONDITIONAL_JUMP_OPS, INSTRUCTIONS, Form, InsnSpec, Op

BLOCK_ENDING_OPS = (
    frozenset({Op.JA, Op.EXIT, Op.CALL, Op.CALLX, Op.CALL_LOCAL, Op.LD_ABS, Op.LD_IND})
    | CONDITIONAL_JUMP_OPS
)
"""Operations that end a basic block: jumps, exits, and anything that may end the run
(calls, legacy packet loads), so a block, once entered, either runs to its end or
faults."""
NO_FALL_THROUGH = frozenset({Op.JA, Op.EXIT})
"""Block-ending operations after which control never reaches the next instruction."""

_ENDING_SPECS = frozenset(spec for spec in INSTRUCTIONS if spec.op in BLOCK_ENDING_OPS)
_SPEC_OF = attrgetter("spec")
_CALL_LOCAL = Op.CALL_LOCAL  # (per-instruction tests: an enum attribute is a slow look-up)

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
            pc += insn.spec.slots
        return tuple(result)

    @cached_property
    def slot_count(self) -> int:
        pcs = self.pcs
        return pcs[-1] + self.instructions[-1].spec.slots if pcs else 0

    @cached_property
    def by_pc(self) -> tuple[Instruction | None, ...]:
        """Instruction starting at each slot; ``None`` for the second slot of a wide one."""
        slots: list[Instruction | None] = []
        for insn in self.instructions:
            slots.append(insn)
            if insn.spec.slots == 2:
                slots.append(None)
        return tuple(slots)

    def __iter__(self) -> Iterator[tuple[int, Instruction]]:
        return zip(self.pcs, self.instructions, strict=True)

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def byte_size(self) -> int:
        return self.slot_count * SLOT_SIZE

    def target_of(self, pc: int, insn: Instruction) -> int | None:
        """Slot index a jump or local call at ``pc`` transfers control to, if any."""
        field_name = _TARGET_FIELD_OF_SPEC.get(insn.spec)
        if field_name is None:
            return None
        return pc + 1 + (insn.off if field_name == "off" else insn.imm)

    @cached_property
    def specs(self) -> frozenset[InsnSpec]:
        """The instruction-table rows the program uses (for per-row questions asked once)."""
        return frozenset(map(_SPEC_OF, self.instructions))

    @cached_property
    def targets(self) -> tuple[int | None, ...]:
        """:meth:`target_of` of every instruction, in order (computed once)."""
        fields = _TARGET_FIELD_OF_SPEC
        result: list[int | None] = [None] * len(self.instructions)
        pcs = self.pcs
        for index, insn in enumerate(self.instructions):
            field_name = fields.get(insn.spec)
            if field_name is not None:
                offset = insn.off if field_name == "off" else insn.imm
                result[index] = pcs[index] + 1 + offset
        return tuple(result)

    @cached_property
    def jump_targets(self) -> frozenset[int]:
        """Slot indexes some jump may land on."""
        return frozenset(
            target
            for insn, target in zip(self.instructions, self.targets, strict=True)
            if target is not None and insn.spec.op is not _CALL_LOCAL
        )

    @cached_property
    def local_call_targets(self) -> frozenset[int]:
        """Slot indexes some bpf-to-bpf call enters (0 too, if the program recurses)."""
        return frozenset(
            target
            for insn, target in zip(self.instructions, self.targets, strict=True)
            if target is not None and insn.spec.op is _CALL_LOCAL
        )

    @cached_property
    def function_entries(self) -> frozenset[int]:
        """Slot indexes of subprogram entries: 0 and every local call target."""
        return self.local_call_targets | {0}

    @cached_property
    def functions(self) -> tuple[tuple[int, int], ...]:
        """``(entry, end)`` slot ranges of every function, the main program first."""
        entries = sorted(self.function_entries)
        return tuple(zip(entries, [*entries[1:], self.slot_count], strict=True))

    @cached_property
    def _blocks(self) -> dict[tuple[int, int], list[Block]]:
        """The basic blocks of every function, keyed ``(entry, end)``, found in one pass.

        A block starts at a function entry, a jump target, or after an instruction
        that ends a block; function entries are leaders, so no block spans two.
        """
        pcs, instructions = self.pcs, self.instructions
        count = len(instructions)
        targets = self.function_entries | self.jump_targets
        if self.slot_count == count:  # no wide instruction: slot index = position
            leaders = {pc for pc in targets if pc < count}
        else:
            index_of = {pc: index for index, pc in enumerate(pcs)}
            leaders = {index_of[pc] for pc in targets if pc in index_of}  # (unchecked programs)
        ends = map(_ENDING_SPECS.__contains__, map(_SPEC_OF, instructions))
        leaders.update(compress(range(1, count + 1), ends))  # after each block-ending one
        leaders.discard(count)
        starts = sorted(leaders)
        pairs = tuple(zip(pcs, instructions, strict=True))
        blocks = [
            (pcs[start], pairs[start:stop])
            for start, stop in zip(starts, [*starts[1:], count], strict=True)
        ]
        functions = self.functions
        if len(functions) == 1:
            return {functions[0]: blocks}
        result: dict[tuple[int, int], list[Block]] = {}
        block_starts = [pc for pc, _body in blocks]
        first = 0
        for function in functions:  # every entry is a leader: the blocks split there
            last = bisect_left(block_starts, function[1], first)
            result[function] = blocks[first:last]
            first = last
        return result

    def basic_blocks(self, entry: int, end: int) -> list[Block]:
        """The basic blocks of the function occupying slots ``entry`` to ``end``."""
        blocks = self._blocks.get((entry, end))
        if blocks is None:
            raise ValueError(f"slots {entry} to {end} are not a function of the program")
        return list(blocks)

    def block_edges(self, blocks: list[Block]) -> tuple[list[int | None], list[bool]]:
        """For each of a function's blocks: the index of the block its final jump goes
        to (None for no jump, and for a local call), and whether it may run on into
        the next block."""
        index = {start: i for i, (start, _body) in enumerate(blocks)}
        targets: list[int | None] = []
        falls: list[bool] = []
        for _start, body in blocks:
            pc, final = body[-1]
            op = final.spec.op
            target = None if op is _CALL_LOCAL else self.target_of(pc, final)
            targets.append(None if target is None else index[target])
            falls.append(op not in NO_FALL_THROUGH)
        return targets, falls


_TARGET_FIELD: dict[Form, str] = {
    Form.JUMP: "off",
    Form.COND_REG: "off",
    Form.COND_IMM: "off",
    Form.JUMP_LONG: "imm",
    Form.CALL_LOCAL: "imm",
}
"""Forms that transfer control, and the field holding their pc-relative offset."""
_TARGET_FIELD_OF_SPEC: dict[InsnSpec, str] = {
    spec: _TARGET_FIELD[spec.form] for spec in INSTRUCTIONS if spec.form in _TARGET_FIELD
}
"""The same, by instruction-table row (a look-up by identity, per instruction)."""
