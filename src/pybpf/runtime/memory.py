"""The 32-bit VM address space: a map of regions, and checked loads and stores.

Programs see VM addresses, never host pointers.  Each region has a VM start, a
length, a host buffer and a writable flag; address 0 is never mapped.  Every
access is checked and a violation raises :class:`~pybpf.errors.MemoryAccessError`
naming the instruction index, address, size and direction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pybpf.errors import MemoryAccessError

ADDRESS_SPACE_END = 1 << 32
"""VM addresses are 32 bits wide: every region lies below this."""

STACK_BASE = 0x1000_0000
INPUT_BASE = 0x2000_0000
MBUFF_BASE = 0x3000_0000
EXTRA_BASE = 0x4000_0000
REGION_ALIGN = 0x1000_0000
"""Default regions start on 256 MiB boundaries, one per boundary, so a region's
index is ``address >> 28``: native tiers translate addresses with a shift and a
table lookup."""

_UNSIGNED: dict[int, struct.Struct] = {
    1: struct.Struct("<B"),
    2: struct.Struct("<H"),
    4: struct.Struct("<I"),
    8: struct.Struct("<Q"),
}

Buffer = bytearray | memoryview


@dataclass(eq=False)
class MemoryRegion:
    """A range of VM addresses backed by a host buffer.

    ``vm_start`` is the lowest address the program may touch; it equals ``base``
    (the VM address of ``buffer[0]``) except for the stack, whose lower bound
    follows the innermost active call frame.
    """

    name: str
    base: int
    buffer: Buffer
    writable: bool = True
    vm_start: int = field(default=-1)
    owned: bool = False
    """Whether pybpf allocated the buffer (a stack, a copy): no caller holds it, so a
    tier may keep it pinned between runs.  A caller's buffer must be free to resize
    once a run returns."""

    def __post_init__(self) -> None:
        if self.vm_start < 0:
            self.vm_start = self.base
        if self.base <= 0 or self.base + len(self.buffer) > ADDRESS_SPACE_END:
            raise ValueError(
                f"region {self.name!r} at 0x{self.base:x} (+{len(self.buffer)}) does not fit "
                "in the 32-bit VM address space above 0"
            )

    @property
    def vm_end(self) -> int:
        return self.base + len(self.buffer)

    def __len__(self) -> int:
        return len(self.buffer)

    def contains(self, address: int, size: int) -> bool:
        return self.vm_start <= address and address + size <= self.vm_end


class AddressSpace:
    """The regions a running program can reach, with checked access to them."""

    def __init__(self, regions: list[MemoryRegion] | None = None) -> None:
        self.regions: list[MemoryRegion] = []
        for region in regions or ():
            self.map(region)

    def map(self, region: MemoryRegion) -> MemoryRegion:
        for other in self.regions:
            if region.base < other.vm_end and other.base < region.vm_end:
                raise ValueError(f"region {region.name!r} overlaps region {other.name!r}")
        self.regions.append(region)
        return region

    def region_named(self, name: str) -> MemoryRegion:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def translate(self, address: int, size: int, write: bool, pc: int) -> tuple[Buffer, int]:
        """The host buffer and offset of an access, or a memory-access error."""
        for region in self.regions:
            if region.vm_start <= address and address + size <= region.vm_end:
                if write and not region.writable:
                    raise MemoryAccessError(
                        pc, address, size, write, f"region {region.name!r} is read-only"
                    )
                return region.buffer, address - region.base
        raise MemoryAccessError(pc, address, size, write, self._explain(address, size))

    def _explain(self, address: int, size: int) -> str:
        if address < 0x1000:
            return "NULL pointer dereference"
        for region in self.regions:
            if region.base <= address < region.vm_start:
                return f"below the current frame of region {region.name!r}"
            if region.vm_start <= address < region.vm_end:
                return (
                    f"runs past the end of region {region.name!r} "
                    f"[0x{region.vm_start:x}, 0x{region.vm_end:x})"
                )
            if address < region.vm_start < address + size:
                return f"starts before region {region.name!r}"
        return "outside every mapped region"

    def load(self, address: int, size: int, pc: int) -> int:
        buffer, offset = self.translate(address, size, False, pc)
        value: int = _UNSIGNED[size].unpack_from(buffer, offset)[0]
        return value

    def store(self, address: int, size: int, value: int, pc: int) -> None:
        buffer, offset = self.translate(address, size, True, pc)
        _UNSIGNED[size].pack_into(buffer, offset, value & ((1 << (8 * size)) - 1))

    def read_modify_write(
        self, address: int, size: int, update: Callable[[int], int], pc: int
    ) -> int:
        """Atomically (the VM is single-threaded) store ``update(old)``; returns ``old``."""
        buffer, offset = self.translate(address, size, True, pc)
        codec = _UNSIGNED[size]
        old: int = codec.unpack_from(buffer, offset)[0]
        codec.pack_into(buffer, offset, update(old) & ((1 << (8 * size)) - 1))
        return old

    def read(self, address: int, length: int, pc: int) -> bytes:
        """Copy ``length`` bytes out of one region."""
        if length == 0:
            return b""
        buffer, offset = self.translate(address, length, False, pc)
        return bytes(buffer[offset : offset + length])

    def write(self, address: int, data: bytes, pc: int) -> None:
        """Copy ``data`` into one region."""
        if not data:
            return
        buffer, offset = self.translate(address, len(data), True, pc)
        buffer[offset : offset + len(data)] = data

    def read_cstring(self, address: int, pc: int, limit: int = 4096) -> bytes:
        """The NUL-terminated string at ``address`` (without the NUL), within one region."""
        buffer, offset = self.translate(address, 1, False, pc)
        region_end = len(buffer)
        end = bytes(buffer[offset : min(region_end, offset + limit)]).find(b"\0")
        if end < 0:
            length = min(region_end - offset, limit) + 1
            raise MemoryAccessError(pc, address, length, False, "string is not NUL-terminated")
        return bytes(buffer[offset : offset + end])
