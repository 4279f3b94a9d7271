"""The region map: placement, checked access, and the errors it raises."""

from __future__ import annotations

import pytest

from pybpf import MemoryAccessError
from pybpf.runtime.memory import AddressSpace, MemoryRegion


def space() -> AddressSpace:
    return AddressSpace(
        [
            MemoryRegion("data", 0x2000_0000, bytearray(range(16))),
            MemoryRegion("rodata", 0x4000_0000, bytearray(b"\x11" * 8), writable=False),
        ]
    )


def test_loads_are_little_endian_and_sized() -> None:
    memory = space()
    assert memory.load(0x2000_0000, 1, 0) == 0x00
    assert memory.load(0x2000_0001, 2, 0) == 0x0201
    assert memory.load(0x2000_0004, 4, 0) == 0x07060504
    assert memory.load(0x2000_0008, 8, 0) == 0x0F0E0D0C0B0A0908


def test_stores_truncate_to_their_size() -> None:
    memory = space()
    memory.store(0x2000_0000, 2, 0x1_2345, 0)
    assert memory.load(0x2000_0000, 4, 0) == 0x03022345


@pytest.mark.parametrize(
    ("address", "size", "write"),
    [
        (0, 1, False),  # NULL is never mapped
        (0x10, 8, True),
        (0x2000_0010, 1, False),  # one past the end
        (0x2000_000F, 2, False),  # straddles the end
        (0x1FFF_FFFF, 2, False),  # straddles the start
        (0x4000_0000, 1, True),  # read-only region
        (0xFFFF_FFFF_FFFF_FFFF, 1, False),  # beyond the 32-bit space
        (0x1_2000_0000, 1, False),  # a 64-bit address whose low half is mapped
    ],
)
def test_bad_accesses_raise_with_details(address: int, size: int, write: bool) -> None:
    memory = space()
    with pytest.raises(MemoryAccessError) as info:
        if write:
            memory.store(address, size, 0, 7)
        else:
            memory.load(address, size, 7)
    error = info.value
    assert (error.pc, error.address, error.size, error.write) == (7, address, size, write)


def test_read_only_region_can_be_read() -> None:
    assert space().load(0x4000_0000, 8, 0) == 0x1111111111111111


def test_regions_may_not_overlap_or_sit_at_zero() -> None:
    memory = space()
    with pytest.raises(ValueError):
        memory.map(MemoryRegion("clash", 0x2000_0008, bytearray(16)))
    with pytest.raises(ValueError):
        MemoryRegion("null", 0, bytearray(4))
    with pytest.raises(ValueError):
        MemoryRegion("too-high", 0xFFFF_FFF0, bytearray(32))


def test_cstrings_stop_at_nul_and_must_end_inside_the_region() -> None:
    memory = AddressSpace([MemoryRegion("s", 0x1000, bytearray(b"abc\0def"))])
    assert memory.read_cstring(0x1000, 0) == b"abc"
    with pytest.raises(MemoryAccessError):
        memory.read_cstring(0x1004, 0)
