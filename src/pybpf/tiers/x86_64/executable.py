"""Executable memory: machine code in an anonymous mapping, never writable and executable.

The code is copied into a fresh read-write mapping, which is then switched to
read+execute with ``mprotect`` before anything can run it, and unmapped when the
owning object is collected.  Every foreign function declares its argument and
result types.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import platform
import sys
import weakref
from functools import cache

from pybpf.errors import TierUnavailableError

_PROT_READ = mmap.PROT_READ
_PROT_WRITE = mmap.PROT_WRITE
_PROT_EXEC = mmap.PROT_EXEC
_MAP_PRIVATE = mmap.MAP_PRIVATE
_MAP_ANONYMOUS = getattr(mmap, "MAP_ANONYMOUS", 0x20)
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Libc:
    """The three libc calls executable memory needs, with declared signatures."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.mmap = libc.mmap
        self.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self.mmap.restype = ctypes.c_void_p
        self.mprotect = libc.mprotect
        self.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.mprotect.restype = ctypes.c_int
        self.munmap = libc.munmap
        self.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self.munmap.restype = ctypes.c_int


@cache
def _libc() -> _Libc:
    return _Libc()


def unavailable_reason() -> str | None:
    """Why native x86-64 code cannot run here, or None if it can."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the host is {platform.machine()}, not x86-64"
    if not sys.platform.startswith("linux"):
        return f"executable memory is only set up on Linux, not {sys.platform}"
    try:
        probe = ExecutableMemory(b"\xb8\x2a\x00\x00\x00\xc3")  # mov eax, 42; ret
        function = ctypes.CFUNCTYPE(ctypes.c_uint64)(probe.address)
        if function() != 42:
            return "a probe function returned the wrong value"
    except (OSError, TierUnavailableError) as exc:
        return f"executable memory is refused: {exc}"
    return None


def _release(address: int, size: int) -> None:
    _libc().munmap(address, size)


class ExecutableMemory:
    """A read+execute copy of some machine code, unmapped with the object."""

    def __init__(self, code: bytes) -> None:
        libc = _libc()
        self.size = max(mmap.PAGESIZE, -(-len(code) // mmap.PAGESIZE) * mmap.PAGESIZE)
        address = libc.mmap(
            None, self.size, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0
        )
        if address is None or address == _MAP_FAILED:
            raise TierUnavailableError(f"mmap failed (errno {ctypes.get_errno()})")
        self.address: int = address
        self._finalizer = weakref.finalize(self, _release, address, self.size)
        ctypes.memmove(address, code, len(code))
        if libc.mprotect(address, self.size, _PROT_READ | _PROT_EXEC) != 0:
            self._finalizer()
            raise TierUnavailableError(
                f"mprotect to read+execute failed (errno {ctypes.get_errno()})"
            )
        self.code_size = len(code)
