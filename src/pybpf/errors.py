"""The whole exception tree of pybpf, and the numeric trap codes execution tiers report.

Every failure a user can see derives from :class:`BpfError`.  Load-time problems
(bad assembly text, undecodable bytes, a program the checks refuse) and run-time
traps (a guest fault) are separate branches, so callers can catch either.
Run-time traps carry a :class:`TrapKind` whose integer value is what native code
returns as its status word, plus the instruction index (``pc``) that faulted.
"""

from __future__ import annotations

from enum import IntEnum


class BpfError(Exception):
    """Root of every error pybpf raises on purpose."""


class AssemblerError(BpfError):
    """Assembly text that could not be turned into instructions."""

    def __init__(self, message: str, line: int, column: int, text: str = "") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        super().__init__(f"line {line}, column {column}: {message}")


class InvalidProgramError(BpfError):
    """A program refused at load: undecodable bytes or a failed structural check."""

    def __init__(self, message: str, pc: int | None = None) -> None:
        self.message = message
        self.pc = pc
        where = f"instruction {pc}: " if pc is not None else ""
        super().__init__(f"{where}{message}")


class DecodeError(InvalidProgramError):
    """Bytes that are not a valid eBPF instruction stream."""


class VerifierError(InvalidProgramError):
    """A decodable program that a load-time check refused."""


class LoadError(BpfError):
    """An object file (ELF, BTF) that could not be loaded."""

    def __init__(self, message: str, section: str | None = None, symbol: str | None = None) -> None:
        self.message = message
        self.section = section
        self.symbol = symbol
        where = "".join(
            part
            for part in (
                f"section {section}: " if section else "",
                f"symbol {symbol}: " if symbol else "",
            )
        )
        super().__init__(f"{where}{message}")


class TierUnavailableError(BpfError):
    """An execution tier that cannot run here (wrong host, missing dependency)."""


class TrapKind(IntEnum):
    """Why a running program stopped abnormally; values double as native status words."""

    MEMORY_ACCESS = 1
    BUDGET_EXCEEDED = 2
    CALL_DEPTH_EXCEEDED = 3
    UNKNOWN_HELPER = 4
    HELPER_FAILURE = 5


class ExecutionError(BpfError):
    """A run-time trap: the guest program faulted at instruction ``pc``."""

    kind: TrapKind

    def __init__(self, message: str, pc: int) -> None:
        self.message = message
        self.pc = pc
        super().__init__(f"instruction {pc}: {message}")


class MemoryAccessError(ExecutionError):
    """A load or store outside every region, or a write to a read-only region."""

    kind = TrapKind.MEMORY_ACCESS

    def __init__(self, pc: int, address: int, size: int, write: bool, reason: str = "") -> None:
        self.address = address
        self.size = size
        self.write = write
        direction = "write" if write else "read"
        detail = reason or "outside every mapped region"
        super().__init__(f"{direction} of {size} bytes at 0x{address:x}: {detail}", pc)


class BudgetExceededError(ExecutionError):
    """The instruction meter ran out: the program ran longer than its budget."""

    kind = TrapKind.BUDGET_EXCEEDED

    def __init__(self, pc: int, budget: int) -> None:
        self.budget = budget
        super().__init__(f"instruction budget of {budget} exhausted", pc)


class CallDepthExceededError(ExecutionError):
    """A bpf-to-bpf call nested deeper than the call-depth limit."""

    kind = TrapKind.CALL_DEPTH_EXCEEDED

    def __init__(self, pc: int, limit: int) -> None:
        self.limit = limit
        super().__init__(f"call depth limit of {limit} frames exceeded", pc)


class UnknownHelperError(ExecutionError):
    """A call to a helper number nothing is registered for."""

    kind = TrapKind.UNKNOWN_HELPER

    def __init__(self, pc: int, helper: int) -> None:
        self.helper = helper
        super().__init__(f"call to unknown helper {helper}", pc)


class HelperError(ExecutionError):
    """A helper function raised; the original exception is the ``__cause__``."""

    kind = TrapKind.HELPER_FAILURE

    def __init__(self, pc: int, helper: str, detail: str) -> None:
        self.helper = helper
        super().__init__(f"helper {helper} failed: {detail}", pc)


TRAP_TYPES: dict[TrapKind, type[ExecutionError]] = {
    TrapKind.MEMORY_ACCESS: MemoryAccessError,
    TrapKind.BUDGET_EXCEEDED: BudgetExceededError,
    TrapKind.CALL_DEPTH_EXCEEDED: CallDepthExceededError,
    TrapKind.UNKNOWN_HELPER: UnknownHelperError,
    TrapKind.HELPER_FAILURE: HelperError,
}
"""Trap kind to exception type, for tiers that report a numeric status."""
