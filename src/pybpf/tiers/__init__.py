"""Execution tiers: every way pybpf can run a program, behind one small interface.

A tier compiles a :class:`~pybpf.program.Program` once into something that runs it
on a :class:`~pybpf.runtime.machine.Machine` and returns r0.  Native tiers are
imported only when asked for, so importing pybpf loads no native code.
"""

from __future__ import annotations

from typing import Protocol

from pybpf.errors import TierUnavailableError
from pybpf.program import Program
from pybpf.runtime.machine import Machine, MachineConfig


class CompiledProgram(Protocol):
    def run(self, machine: Machine) -> int: ...

    def listing(self) -> str:
        """What the tier generated, for people: source, machine code, or the program."""
        ...


class Tier(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """Why this tier cannot run here, or None if it can."""
        ...

    def compile(self, program: Program, config: MachineConfig) -> CompiledProgram: ...


def _interpreter() -> Tier:
    from pybpf.tiers.interp import InterpreterTier

    return InterpreterTier()


def _pycode() -> Tier:
    from pybpf.tiers.pycode import PythonCodeTier

    return PythonCodeTier()


def _x86_64() -> Tier:
    from pybpf.tiers.x86_64.tier import X86Tier

    return X86Tier()


_TIER_FACTORIES = {
    "interp": _interpreter,
    "pycode": _pycode,
    "x86_64": _x86_64,
}
"""Tier name to a factory; a factory may import heavy or native modules lazily."""

TIER_ALIASES = {"interpreter": "interp", "jit": "x86_64"}

AUTO_ORDER = ("x86_64", "pycode", "interp")
"""What ``tier="auto"`` picks: the fastest tier that can run here."""

TIER_NAMES = tuple(_TIER_FACTORIES)


def get_tier(name: str) -> Tier:
    """The tier called ``name``; raises :class:`TierUnavailableError` if it cannot run.

    ``"auto"`` is the first of :data:`AUTO_ORDER` that can run here.
    """
    if name == "auto":
        for candidate in AUTO_ORDER:
            tier = _TIER_FACTORIES[candidate]()
            if tier.unavailable_reason() is None:
                return tier
    canonical = TIER_ALIASES.get(name, name)
    factory = _TIER_FACTORIES.get(canonical)
    if factory is None:
        known = ", ".join((*TIER_NAMES, *TIER_ALIASES, "auto"))
        raise TierUnavailableError(f"unknown tier {name!r} (known: {known})")
    tier = factory()
    reason = tier.unavailable_reason()
    if reason is not None:
        raise TierUnavailableError(f"tier {canonical!r} is unavailable: {reason}")
    return tier


def available_tiers() -> list[tuple[str, str | None]]:
    """Every tier with the reason it cannot run here, or None where it can."""
    result: list[tuple[str, str | None]] = []
    for name, factory in _TIER_FACTORIES.items():
        try:
            reason = factory().unavailable_reason()
        except Exception as exc:  # a tier whose module fails to import is unavailable
            reason = f"{type(exc).__name__}: {exc}"
        result.append((name, reason))
    return result
