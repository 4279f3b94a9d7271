"""Assembly text to :class:`~pybpf.program.Program`, in rbpf/uBPF and bpf_conformance syntax.

Nothing here knows an opcode: a mnemonic (or alias) picks candidate rows from
:data:`~pybpf.isa.table.BY_MNEMONIC`, and the first row whose compiled operand
template (:data:`~pybpf.asm.operands.OPERANDS`) matches the operands wins.  Labels
are collected in a first pass and resolved once every instruction has its slot
index; as in the conformance assembler, the first ``exit`` defines the label
``exit`` unless the text defines it.  Every failure is an
:class:`~pybpf.errors.AssemblerError` pointing at the offending token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pybpf.asm import operands as rules
from pybpf.asm.lexer import Kind, Token, tokenize
from pybpf.asm.operands import OPERANDS, Draft, LabelError, LabelRef, Part, PartKind
from pybpf.errors import AssemblerError
from pybpf.isa.table import BY_MNEMONIC, InsnSpec, Op
from pybpf.program import Program

_MNEMONIC_WORDS = max(len(name.split()) for name in BY_MNEMONIC)
_MNEMONIC_PREFIXES = frozenset(
    " ".join(name.split()[:count]) for name in BY_MNEMONIC for count in range(1, len(name.split()))
)
"""Leading words of multi-word mnemonics (``lock``, ``lock fetch``)."""


class _Mismatch(Exception):
    """A candidate row whose operand template does not fit the tokens."""

    def __init__(self, token: Token, expected: str) -> None:
        super().__init__(expected)
        self.token = token
        self.expected = expected


class _Cursor:
    """Reading position in one line's tokens."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind is not Kind.END:
            self.pos += 1
        return token

    def take_if(self, kind: Kind, text: str | None = None) -> Token | None:
        token = self.peek()
        if token.kind is kind and (text is None or token.text.lower() == text):
            return self.take()
        return None

    def expect(self, kind: Kind, text: str, expected: str) -> Token:
        token = self.take_if(kind, text)
        if token is None:
            raise _Mismatch(self.peek(), expected)
        return token


_Store = Callable[[Draft], None]
"""Puts one operand's value into a draft; raises ValueError when it does not fit."""

_Reader = Callable[[_Cursor, Part, InsnSpec], list[tuple[Token, _Store]]]


def _signed_number(cursor: _Cursor, expected: str) -> tuple[Token, int]:
    first = cursor.peek()
    sign = cursor.take_if(Kind.PUNCT, "-") or cursor.take_if(Kind.PUNCT, "+")
    number = cursor.take_if(Kind.NUMBER)
    if number is None:
        raise _Mismatch(cursor.peek(), expected)
    return first, -number.value if sign is not None and sign.text == "-" else number.value


def _read_register(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
    token = cursor.take_if(Kind.REGISTER)
    if token is None:
        raise _Mismatch(cursor.peek(), "a register")

    def store(draft: Draft) -> None:
        draft.fields[part.field] = rules.register(token.value)

    return [(token, store)]


def _value_reader(expected: str, convert: Callable[[int], int]) -> _Reader:
    def read(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
        token, value = _signed_number(cursor, expected)

        def store(draft: Draft) -> None:
            draft.fields[part.field] = convert(value)

        return [(token, store)]

    return read


def _read_displacement(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
    token = cursor.peek()
    if token.kind is Kind.PUNCT and token.text == "]":
        return []  # no displacement: off stays 0
    if not (token.kind is Kind.PUNCT and token.text in "+-"):
        raise _Mismatch(token, "'+', '-' or ']'")
    return _value_reader("an offset", lambda value: rules.signed(value, 16))(cursor, part, spec)


def _target_reader(bits: int, expected: str) -> _Reader:
    def read(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
        label = cursor.take_if(Kind.WORD)
        if label is not None:
            ref = LabelRef(part.field, label.text, bits, label.column)
            return [(label, lambda draft: draft.refs.append(ref))]
        token, value = _signed_number(cursor, expected)

        def store(draft: Draft) -> None:
            draft.fields[part.field] = rules.signed(value, bits)

        return [(token, store)]

    return read


def _read_pseudo(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
    name = rules.pseudo_name(spec)
    token = cursor.expect(Kind.WORD, name, f"{name}(...)")
    cursor.expect(Kind.PUNCT, "(", "'('")
    args = [_signed_number(cursor, "a number")]
    if cursor.take_if(Kind.PUNCT, ","):
        args.append(_signed_number(cursor, "a number"))
    cursor.expect(Kind.PUNCT, ")", "')'" if len(args) == 2 else "',' or ')'")
    values = [value for _token, value in args]
    check = rules.imm64 if len(args) == 1 else rules.imm32

    def checker(value: int) -> _Store:
        def store(draft: Draft) -> None:
            check(value)  # only for the range error, pointing at this argument

        return store

    def store(draft: Draft) -> None:
        draft.fields[part.field] = rules.pseudo_value(values)

    return [*((arg, checker(value)) for arg, value in args), (token, store)]


def _read_literal(cursor: _Cursor, part: Part, spec: InsnSpec) -> list[tuple[Token, _Store]]:
    kind = Kind.WORD if part.kind is PartKind.KEYWORD else Kind.PUNCT
    cursor.expect(kind, part.text, f"'{part.text}'")
    return []


_READERS: dict[PartKind, _Reader] = {
    PartKind.REGISTER: _read_register,
    PartKind.IMM: _value_reader("an immediate", rules.imm32),
    PartKind.IMM64: _value_reader("a 64-bit immediate", rules.imm64),
    PartKind.DISPLACEMENT: _read_displacement,
    PartKind.JUMP: _target_reader(16, "a jump offset or label"),
    PartKind.TARGET: _target_reader(32, "a target offset or label"),
    PartKind.PSEUDO: _read_pseudo,
    PartKind.KEYWORD: _read_literal,
    PartKind.PUNCT: _read_literal,
}


class _Source:
    """The line being assembled, for error positions."""

    def __init__(self, line: int, text: str) -> None:
        self.line = line
        self.text = text

    def error(self, message: str, column: int) -> AssemblerError:
        return AssemblerError(message, self.line, column, self.text)


@dataclass(frozen=True)
class _Placed:
    """A parsed instruction with its slot index and the line it came from."""

    pc: int
    draft: Draft
    source: _Source


def _mnemonic(cursor: _Cursor, source: _Source) -> str:
    """Consume the (possibly multi-word) mnemonic at the cursor."""
    words: list[Token] = []
    while len(words) < _MNEMONIC_WORDS and cursor.tokens[cursor.pos + len(words)].kind is Kind.WORD:
        words.append(cursor.tokens[cursor.pos + len(words)])
    if not words:
        token = cursor.peek()
        raise source.error(f"expected a mnemonic, found {token.describe()}", token.column)
    spelled = [word.text.lower() for word in words]
    for count in range(len(words), 0, -1):
        name = " ".join(spelled[:count])
        if name in BY_MNEMONIC:
            cursor.pos += count
            return name
    count = 1
    while count < len(words) and " ".join(spelled[:count]) in _MNEMONIC_PREFIXES:
        count += 1
    unknown = " ".join(word.text for word in words[:count])
    raise source.error(f"unknown mnemonic '{unknown}'", words[0].column)


def _match(cursor: _Cursor, spec: InsnSpec) -> list[tuple[Token, _Store]]:
    stores: list[tuple[Token, _Store]] = []
    for part in OPERANDS[spec.form]:
        stores.extend(_READERS[part.kind](cursor, part, spec))
    if cursor.peek().kind is not Kind.END:
        raise _Mismatch(cursor.peek(), "end of line")
    return stores


def _mismatch_error(mismatches: list[_Mismatch], source: _Source) -> AssemblerError:
    column = max(m.token.column for m in mismatches)
    furthest = [m for m in mismatches if m.token.column == column]
    expected = list(dict.fromkeys(m.expected for m in furthest))
    wanted = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
    return source.error(f"expected {wanted}, found {furthest[0].token.describe()}", column)


def _instruction(tokens: list[Token], source: _Source) -> Draft:
    """Parse one instruction (the tokens after any labels) into a draft."""
    cursor = _Cursor(tokens)
    name = _mnemonic(cursor, source)
    start = cursor.pos
    mismatches: list[_Mismatch] = []
    for spec in BY_MNEMONIC[name]:
        cursor.pos = start
        try:
            stores = _match(cursor, spec)
        except _Mismatch as mismatch:
            mismatches.append(mismatch)
            continue
        draft = Draft(spec)
        for token, store in stores:
            try:
                store(draft)
            except ValueError as exc:
                raise source.error(str(exc), token.column) from None
        return draft
    raise _mismatch_error(mismatches, source)


def _labels(
    tokens: list[Token], labels: dict[str, tuple[int, int]], pc: int, source: _Source
) -> int:
    """Record the ``name:`` definitions that start a line; return where the rest begins."""
    pos = 0
    while tokens[pos].kind is not Kind.END and tokens[pos + 1].text == ":":
        token = tokens[pos]
        if token.kind is not Kind.WORD:
            raise source.error(f"expected a label name, found {token.describe()}", token.column)
        if token.text in labels:
            first = labels[token.text][1]
            raise source.error(
                f"duplicate label '{token.text}' (first defined on line {first})", token.column
            )
        labels[token.text] = (pc, source.line)
        pos += 2
    return pos


def assemble(text: str, name: str = "") -> Program:
    """Assemble eBPF assembly text into a program; raises :class:`AssemblerError`."""
    placed: list[_Placed] = []
    labels: dict[str, tuple[int, int]] = {}
    first_exit: int | None = None
    pc = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        source = _Source(lineno, line)
        tokens = tokenize(line, lineno)
        start = _labels(tokens, labels, pc, source)
        if tokens[start].kind is Kind.END:
            continue
        draft = _instruction(tokens[start:], source)
        placed.append(_Placed(pc, draft, source))
        if draft.spec.op is Op.EXIT and first_exit is None:
            first_exit = pc
        pc += draft.spec.slots
    targets = {label: where for label, (where, _line) in labels.items()}
    if first_exit is not None:
        targets.setdefault("exit", first_exit)
    instructions = []
    for item in placed:
        try:
            instructions.append(item.draft.resolve(item.pc, targets))
        except LabelError as exc:
            raise item.source.error(str(exc), exc.ref.column) from None
    return Program(tuple(instructions), name)
