"""Helper functions: a registry keyed by number and by name, and the sets pybpf ships.

A helper receives the running :class:`~pybpf.runtime.machine.Machine` and the five
argument registers r1-r5, and returns a u64 that lands in r0.  Standard helpers use
their Linux numbers (``include/uapi/linux/bpf.h``) so kernel-targeted programs run
unmodified; the bpf_conformance suite's test helpers live in their own set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pybpf.errors import BpfError, HelperError, UnknownHelperError
from pybpf.isa.semantics import MASK64, to_signed

if TYPE_CHECKING:
    from pybpf.runtime.machine import Machine


class HelperFunction(Protocol):
    """``fn(machine, r1, r2, r3, r4, r5) -> r0``."""

    def __call__(self, vm: Machine, r1: int, r2: int, r3: int, r4: int, r5: int, /) -> int: ...


@dataclass(frozen=True)
class Helper:
    number: int
    name: str
    function: HelperFunction


class HelperRegistry:
    """Helpers by number and by name; a VM holds one, tiers look calls up in it."""

    def __init__(self, helpers: list[Helper] | None = None) -> None:
        self._by_number: dict[int, Helper] = {}
        self._by_name: dict[str, Helper] = {}
        for helper in helpers or ():
            self._add(helper)

    def _add(self, helper: Helper) -> None:
        previous = self._by_number.get(helper.number)
        if previous is not None:
            del self._by_name[previous.name]
        self._by_number[helper.number] = helper
        self._by_name[helper.name] = helper

    def register(self, number: int, function: HelperFunction, name: str | None = None) -> Helper:
        """Add (or replace) helper ``number``; the name defaults to the function's."""
        if not 0 <= number < 2**31:
            raise ValueError(f"helper number {number} is outside 0..2**31-1")
        default_name: str = getattr(function, "__name__", f"helper_{number}")
        helper = Helper(number, name or default_name, function)
        self._add(helper)
        return helper

    def helper(
        self, number: int, name: str | None = None
    ) -> Callable[[HelperFunction], HelperFunction]:
        """Decorator form of :meth:`register`."""

        def decorate(function: HelperFunction) -> HelperFunction:
            self.register(number, function, name)
            return function

        return decorate

    def get(self, number: int) -> Helper | None:
        return self._by_number.get(number)

    def by_name(self, name: str) -> Helper:
        return self._by_name[name]

    def number_of(self, name: str) -> int:
        return self._by_name[name].number

    def __contains__(self, key: object) -> bool:
        return key in self._by_number or key in self._by_name

    def __iter__(self) -> Iterator[Helper]:
        return iter(sorted(self._by_number.values(), key=lambda helper: helper.number))

    def __len__(self) -> int:
        return len(self._by_number)

    def copy(self) -> HelperRegistry:
        return HelperRegistry(list(self))


def invoke_helper(
    vm: Machine, number: int, pc: int, r1: int, r2: int, r3: int, r4: int, r5: int
) -> int:
    """Call helper ``number`` for the instruction at ``pc``; returns r0 as a u64.

    Shared by every tier, so unknown helpers, failing helpers and bad return values
    turn into the same errors everywhere.  A helper that asked to stop the program
    leaves ``vm.stop_value`` set; the calling tier ends the run.
    """
    helper = vm.helpers.get(number)
    if helper is None:
        raise UnknownHelperError(pc, number)
    vm.pc = pc
    try:
        result = helper.function(vm, r1, r2, r3, r4, r5)
    except BpfError:
        raise
    except Exception as exc:  # a helper's own bug or refusal, never unwound into the guest
        raise HelperError(pc, helper.name, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(result, int):
        raise HelperError(pc, helper.name, f"returned {type(result).__name__}, not an int")
    return result & MASK64


# -- the Linux general-purpose helpers ------------------------------------------

_PRINTK_SPEC = re.compile(r"%(ll|l)?([diuxXpsc%])")
_PRINTK_WIDTH = {"": 32, "l": 64, "ll": 64}


def format_printk(vm: Machine, fmt: str, args: tuple[int, ...]) -> str:
    """Expand a trace_printk format the way the kernel does (at most 3 arguments)."""
    remaining = list(args)

    def expand(match: re.Match[str]) -> str:
        length, conversion = match.group(1) or "", match.group(2)
        if conversion == "%":
            return "%"
        if not remaining:
            raise ValueError(f"format {fmt!r} needs more than {len(args)} arguments")
        value = remaining.pop(0)
        bits = 64 if conversion in "ps" else _PRINTK_WIDTH[length]
        value &= (1 << bits) - 1
        if conversion in "di":
            return str(to_signed(value, bits))
        if conversion == "u":
            return str(value)
        if conversion in "xX":
            return format(value, conversion)
        if conversion == "p":
            return f"0x{value:x}"
        if conversion == "c":
            return chr(value & 0xFF)
        return vm.read_cstring(value).decode("utf-8", "replace")

    return _PRINTK_SPEC.sub(expand, fmt)


def bpf_trace_printk(vm: Machine, fmt: int, fmt_size: int, a: int, b: int, c: int) -> int:
    """Linux helper 6: formatted trace output; returns the number of bytes produced."""
    raw = vm.read(fmt, fmt_size)
    text = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    line = format_printk(vm, text, (a, b, c))
    vm.trace(line.rstrip("\n"))
    return len(line.encode())


def bpf_ktime_get_ns(vm: Machine, *_: int) -> int:
    """Linux helper 5: a monotonic clock in nanoseconds."""
    return vm.config.clock() & MASK64


def bpf_get_prandom_u32(vm: Machine, *_: int) -> int:
    """Linux helper 7: a pseudo-random u32, reproducible from the VM's seed."""
    return vm.rng.getrandbits(32)


def bpf_get_smp_processor_id(vm: Machine, *_: int) -> int:
    """Linux helper 8: pybpf runs every program on CPU 0."""
    return 0


def default_helpers() -> HelperRegistry:
    """The general-purpose Linux helpers, under their kernel numbers."""
    registry = HelperRegistry()
    registry.register(5, bpf_ktime_get_ns, "bpf_ktime_get_ns")
    registry.register(6, bpf_trace_printk, "bpf_trace_printk")
    registry.register(7, bpf_get_prandom_u32, "bpf_get_prandom_u32")
    registry.register(8, bpf_get_smp_processor_id, "bpf_get_smp_processor_id")
    registry.register(125, bpf_ktime_get_ns, "bpf_ktime_get_boot_ns")
    registry.register(160, bpf_ktime_get_ns, "bpf_ktime_get_coarse_ns")
    return registry


# -- the bpf_conformance suite's test helpers -------------------------------------


def gather_bytes(vm: Machine, a: int, b: int, c: int, d: int, e: int) -> int:
    return (
        ((a & 0xFF) << 32)
        | ((b & 0xFF) << 24)
        | ((c & 0xFF) << 16)
        | ((d & 0xFF) << 8)
        | (e & 0xFF)
    )


def memfrob(vm: Machine, pointer: int, length: int, *_: int) -> int:
    data = vm.read(pointer, length)
    vm.write(pointer, bytes(byte ^ 42 for byte in data))
    return 0


def no_op(vm: Machine, *_: int) -> int:
    return 0


def sqrti(vm: Machine, value: int, *_: int) -> int:
    return math.isqrt(value)


def strcmp_ext(vm: Machine, a: int, b: int, *_: int) -> int:
    """C strcmp: the difference of the first differing unsigned bytes, as a u64."""
    left, right = vm.read_cstring(a) + b"\0", vm.read_cstring(b) + b"\0"
    for x, y in zip(left, right, strict=False):
        if x != y:
            return (x - y) & MASK64
    return 0


def unwind(vm: Machine, value: int, *_: int) -> int:
    """Returns its argument; when that is 0 the program stops at once with r0 = 0."""
    if value == 0:
        vm.stop(0)
    return value


def conformance_helpers() -> HelperRegistry:
    """The helpers bpf_conformance test programs call, by the numbers they use."""
    functions: list[HelperFunction] = [gather_bytes, memfrob, no_op, sqrti, strcmp_ext, unwind]
    registry = HelperRegistry()
    for number, function in enumerate(functions):
        registry.register(number, function)
    return registry
