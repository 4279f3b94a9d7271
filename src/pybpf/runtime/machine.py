"""The state of one run of a program: registers, address space, call frames, meter.

Every execution tier runs a :class:`Machine`; helpers receive it as their context,
so it is also the API a helper uses to read and write guest memory, print trace
output or stop the program.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pybpf.runtime.memory import STACK_BASE, AddressSpace, MemoryRegion

if TYPE_CHECKING:
    from pybpf.runtime.helpers import HelperRegistry

DEFAULT_BUDGET = 10_000_000
"""Default instruction budget: generous for real programs, a few seconds for loops."""

DEFAULT_STACK_SIZE = 512
"""Bytes per stack frame, as in Linux (MAX_BPF_STACK)."""

DEFAULT_MAX_CALL_DEPTH = 8
"""Frames a program may have at once, main included, as in Linux (MAX_CALL_FRAMES)."""


def in_current_frame(base: int, off: int, size: int, frame_size: int) -> bool:
    """Whether ``[base + off, + size)`` is inside the current stack frame whatever runs.

    True only for r10 with a constant offset in the frame: r10 is read-only and
    always the frame's top, so such an access can never miss (tiers skip its check).
    """
    return base == 10 and -frame_size <= off <= -size


StackTop = tuple[memoryview, bytes]
"""A view of the top bytes of a stack, and as many zero bytes."""


@dataclass(frozen=True)
class MachineConfig:
    """Limits and environment shared by every run of a VM."""

    budget: int = DEFAULT_BUDGET
    stack_size: int = DEFAULT_STACK_SIZE
    max_call_depth: int = DEFAULT_MAX_CALL_DEPTH
    seed: int = 0
    clock: Callable[[], int] = time.monotonic_ns

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError("budget must be at least 1 instruction")
        if self.stack_size < 8 or self.stack_size % 8:
            raise ValueError("stack_size must be a positive multiple of 8")
        if self.max_call_depth < 1:
            raise ValueError("max_call_depth must be at least 1")


@dataclass
class Frame:
    """A caller's state saved by a bpf-to-bpf call: where to return, and r6-r9."""

    return_pc: int
    saved: tuple[int, int, int, int]


@dataclass
class Machine:
    """One run's mutable state: created for a run, or restarted for the next one.

    A VM keeps one machine and reuses it run after run (:meth:`restart`); every
    run still starts as a fresh machine would: a zeroed stack, fresh registers
    and frames, and only the regions it is given.
    """

    config: MachineConfig
    memory: AddressSpace
    stack: MemoryRegion
    helpers: HelperRegistry
    packet: MemoryRegion | None = None
    regs: list[int] = field(default_factory=lambda: [0] * 11)
    frames: list[Frame] = field(default_factory=list)
    pc: int = 0
    instructions: int = 0
    stop_value: int | None = None
    trace_lines: list[str] = field(default_factory=list)
    trace_sink: Callable[[str], None] | None = None
    rng: random.Random = field(default_factory=random.Random)
    stack_dirty: StackTop | None = None
    """The top of the stack the last run could have written: :meth:`restart` zeroes it."""

    @classmethod
    def create(
        cls,
        config: MachineConfig,
        helpers: HelperRegistry,
        regions: list[MemoryRegion],
        packet: MemoryRegion | None = None,
        trace_sink: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> Machine:
        """A machine with a fresh zeroed stack and the given regions mapped."""
        total = config.stack_size * config.max_call_depth
        stack = MemoryRegion("stack", STACK_BASE, bytearray(total), owned=True)
        stack.vm_start = stack.vm_end - config.stack_size
        machine = cls(
            config=config,
            memory=AddressSpace([stack, *regions]),
            stack=stack,
            helpers=helpers,
            packet=packet,
            trace_sink=trace_sink,
            rng=rng if rng is not None else random.Random(config.seed),
        )
        machine.regs[10] = stack.vm_end
        return machine

    def stack_top(self, size: int) -> StackTop:
        """The top ``size`` bytes of the whole stack area, for :meth:`restart`."""
        buffer = self.stack.buffer
        return memoryview(buffer)[len(buffer) - size :], bytes(size)

    def restart(
        self,
        regions: list[MemoryRegion],
        packet: MemoryRegion | None,
        r1: int,
        r2: int,
        stack_reach: StackTop,
    ) -> None:
        """Begin a new run with ``regions`` mapped (the stack first) and r1, r2 set.

        The part of the stack the last run could reach is zeroed first;
        ``stack_reach`` (from :meth:`stack_top`) is the part this run can reach.
        ``regions`` must not overlap (the VM checked them when they were added).
        """
        stack = self.stack
        buffer = stack.buffer
        dirty = self.stack_dirty
        if dirty is not None:
            dirty[0][:] = dirty[1]
        self.stack_dirty = stack_reach
        top = stack.base + len(buffer)
        stack.vm_start = top - self.config.stack_size
        self.memory.regions = regions
        self.packet = packet
        self.regs = [0, r1, r2, 0, 0, 0, 0, 0, 0, 0, top]
        if self.frames:
            self.frames = []
        self.pc = 0
        self.instructions = 0
        self.stop_value = None
        if self.trace_lines:
            self.trace_lines = []

    # -- the helper-facing API -------------------------------------------------

    def read(self, address: int, length: int) -> bytes:
        """Guest memory, checked as a load by the current instruction."""
        return self.memory.read(address, length, self.pc)

    def write(self, address: int, data: bytes) -> None:
        """Store into guest memory, checked as a store by the current instruction."""
        self.memory.write(address, data, self.pc)

    def read_cstring(self, address: int, limit: int = 4096) -> bytes:
        return self.memory.read_cstring(address, self.pc, limit)

    def stop(self, r0: int) -> None:
        """End the program once the current helper returns, with this r0."""
        self.stop_value = r0

    def trace(self, line: str) -> None:
        """Record a line of trace output (trace_printk and friends)."""
        self.trace_lines.append(line)
        if self.trace_sink is not None:
            self.trace_sink(line)

    # -- frames ----------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Frames active now, the main program's included."""
        return len(self.frames) + 1

    def push_frame(self, return_pc: int) -> None:
        regs = self.regs
        self.frames.append(Frame(return_pc, (regs[6], regs[7], regs[8], regs[9])))
        regs[10] -= self.config.stack_size
        self.stack.vm_start = regs[10] - self.config.stack_size

    def pop_frame(self) -> int:
        frame = self.frames.pop()
        regs = self.regs
        regs[6], regs[7], regs[8], regs[9] = frame.saved
        regs[10] += self.config.stack_size
        self.stack.vm_start = regs[10] - self.config.stack_size
        return frame.return_pc
