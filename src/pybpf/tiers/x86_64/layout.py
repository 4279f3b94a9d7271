"""The run context shared by native code and Python: one flat block of 64-bit words.

Native code keeps its address in r11 and reaches every field at a fixed offset.
The region table describes each 256 MiB slot of the VM address space
(``address >> 28``): the lowest address of its region, the host address that
lowest address maps to, and for each access size and direction how many start
addresses are valid (0 where nothing is: an unmapped slot, writes to a read-only
region, accesses wider than the region).  An access at ``address`` is valid when
``address - lowest`` is below that count, one unsigned compare, and then lives at
``host + (address - lowest)``.  The table is stored field by field (ten arrays of
16 words), so native code reaches a slot's field with one scaled-index operand.
"""

from __future__ import annotations

SLOT_SHIFT = 28
SLOT_COUNT = 16
FIELD_STRIDE = SLOT_COUNT * 8
"""Bytes of one field's array."""

# the fields of a slot, as offsets of their arrays
LOWEST = 0
"""The region's lowest address (for the stack, the current frame's)."""
HOST = FIELD_STRIDE
"""The host address of ``LOWEST``."""
ACCESS_SIZES = (1, 2, 4, 8)
COUNT: dict[tuple[int, bool], int] = {
    (size, write): (2 + index + 4 * write) * FIELD_STRIDE
    for write in (False, True)
    for index, size in enumerate(ACCESS_SIZES)
}
"""(size, write) -> the array of valid start counts: ``end - lowest - size + 1``, or
0 (writes to a read-only region, nothing mapped, a region smaller than ``size``)."""
TABLE_FIELDS = (LOWEST, HOST, *COUNT.values())

TABLE = 0
REGS = TABLE + len(TABLE_FIELDS) * FIELD_STRIDE
BUDGET_LEFT = REGS + 11 * 8
"""Instructions left; native code keeps it in a register and stores it on the way out."""
FRAME_LO_DELTA = BUDGET_LEFT + 8
"""``STACK_DELTA`` plus the frame size: the host r10 minus this is the frame's lowest VM
address, which calls and returns write into the stack slot's table entry."""
SAVED_RSP = FRAME_LO_DELTA + 8
TRAP_PC = SAVED_RSP + 8
FAULT_ADDRESS = TRAP_PC + 8
FAULT_INFO = FAULT_ADDRESS + 8
"""The return address of the failed address check: names the access (its pc, size and
direction) through ``NativeCode.memory_sites``."""
STACK_DELTA = FAULT_INFO + 8
"""Host address of the stack buffer minus its VM address: turns r10 into a host pointer."""
PACKET_HOST = STACK_DELTA + 8
PACKET_LENGTH = PACKET_HOST + 8
HELPER_NUMBER = PACKET_LENGTH + 8
HELPER_ARGS = HELPER_NUMBER + 8
HELPER_RESULT = HELPER_ARGS + 5 * 8
CALLBACK = HELPER_RESULT + 8
RESUME_PC = CALLBACK + 8
# batches: records back to back in one buffer, offsets and lengths as u64 arrays
BATCH_HOST = RESUME_PC + 8
BATCH_OFFSETS = BATCH_HOST + 8
BATCH_LENGTHS = BATCH_OFFSETS + 8
BATCH_OUT = BATCH_LENGTHS + 8
BATCH_COUNT = BATCH_OUT + 8
BATCH_INDEX = BATCH_COUNT + 8
"""The record being run; after a non-OK status, the record that stopped the loop."""
BATCH_BUDGET = BATCH_INDEX + 8
STACK_TOP_HOST = BATCH_BUDGET + 8
"""Host address of the top of the stack: r10 of the main frame, and the stack region's
end (a call's new frame bottom gives the stack slot's counts from it)."""
STACK_HOST = STACK_TOP_HOST + 8
"""Host address of the bottom of the whole stack area."""
BATCH_STRIDE = STACK_HOST + 8
"""Size of every record when they all have one (offsets and lengths are then unused)."""
BATCH_WRITABLE = BATCH_STRIDE + 8
"""All ones when the records are writable, else 0: the record's write counts are its
read counts masked with this."""
FP_LIMIT = BATCH_WRITABLE + 8
"""Host address of the deepest frame's top: a call from a frame whose host r10 is at or
below it would exceed the call depth."""
SHADOW_DELTA = FP_LIMIT + 8
"""Host r10 plus this is where a call made from that frame keeps its shadow frame."""
ZERO_START = SHADOW_DELTA + 8
"""Where the stack bytes a batch record can touch begin, as an offset from the main
frame's host r10 (negative); each record starts by zeroing them."""
ZERO_WORDS = ZERO_START + 8
"""How many 8-byte words from ``ZERO_START`` each record zeroes."""
LOOP_START = ZERO_WORDS + 8
"""The counter of the counted loop running without the meter, as it was when the loop
began: its ways out count the passes made from it."""
FRAMES = LOOP_START + 8
"""The shadow frames: one every frame size bytes, the main program's call at the top,
each the return pc then the caller's r6-r9 (those the callee may change)."""


def context_size(max_call_depth: int, stack_size: int) -> int:
    return FRAMES + stack_size * max_call_depth


def shadow_frame(level: int, max_call_depth: int, stack_size: int) -> int:
    """Context offset of the shadow frame of call ``level`` (0: made by the main program)."""
    return FRAMES + stack_size * (max_call_depth - 1 - level)


def table_field(field: int, slot: int) -> int:
    """Byte offset of one field of a slot (``field`` is one of :data:`TABLE_FIELDS`)."""
    return TABLE + field + 8 * slot


class Status:
    """Values native code returns; trap kinds use their :class:`~pybpf.errors.TrapKind`."""

    OK = 0
    OUT_OF_BUDGET = 100
    """The next block would overrun the budget: the interpreter finishes exactly."""
    PACKET_MISS = 101
    """A legacy packet load missed the packet: the program ends with r0 = 0."""
    CALLBACK = 102
    """A helper raised or asked to stop; Python knows which."""
