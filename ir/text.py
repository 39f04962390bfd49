"""The IR's text form: `to_text` prints a function and `parse` reads it back to an equal one.

Every op uses one generic syntax, so the printer and parser need no per-op code:

    %r = name %a, 2.0 {key = value} : f32[2,3]  loc("file.py":4)

Each `format_x` below has its `_parse_x` counterpart in `_Parser`.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from ir.builder import literal_dtype_at
from ir.core import DTYPES, DenseConst, DType, Function, Literal, Location, Op, Operand
from ir.core import TensorType, Value


class IRParseError(ValueError):
    """IR text that does not parse; says where, with the line and a caret under the column."""

    def __init__(self, message: str, text: str, line: int, col: int):
        source = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        super().__init__(f"{message} at line {line}, column {col}\n  {source}\n  {' ' * (col - 1)}^")
        self.line, self.col = line, col


# Printing --------------------------------------------------------------------------------------

def format_scalar(value: bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def format_literal(lit: Literal, op: Op | None, index: int = -1) -> str:
    default = literal_dtype_at(op.name, index, op.operands, op.type.dtype) if op else None
    text = format_scalar(lit.value)
    return text if lit.dtype == default else f"{text}:{lit.dtype.name}"


def format_operand(o: Operand, op: Op | None = None, index: int = -1) -> str:
    return str(o) if isinstance(o, Value) else format_literal(o, op, index)


def format_attr(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, DType):
        return value.name
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, DenseConst):
        items = ", ".join(format_scalar(v) for v in value.array.ravel().tolist())
        return f"dense<{value.type} [{items}]>"
    return format_scalar(value)


def format_op(op: Op, locations: bool = True) -> str:
    text = f"{op.result} = {op.name}"
    if op.operands:
        text += " " + ", ".join(format_operand(o, op, i) for i, o in enumerate(op.operands))
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in sorted(op.attrs.items())) + "}"
    text += f" : {op.type}"
    if op.loc is not None and locations:
        text = f"{text:<40}  {op.loc}"
    return text


def to_text(fn: Function, locations: bool = True) -> str:
    """The function's text; without `locations`, what it computes and nothing else (a key
    for caches: the same program traced from two lines is one program)."""
    params = ", ".join(f"{p}: {p.type}" for p in fn.params)
    types = [str(t) for t in fn.result_types]
    result = types[0] if len(types) == 1 else "(" + ", ".join(types) + ")"
    lines = [f"func @{fn.name}({params}) -> {result} {{"]
    lines += ["  " + format_op(op, locations) for op in fn.ops]
    lines.append("  return" + (" " + ", ".join(map(str, fn.results)) if fn.results else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


# Parsing ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|//[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<symbol>@[A-Za-z0-9_.]+)
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+|inf\b))
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>->|[()\[\]{},:=<>])
""", re.VERBOSE)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[tuple[str, str, int, int]] = []
        line, line_start, pos = 1, 0, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise IRParseError(f"unexpected character {text[pos]!r}", text, line,
                                   pos - line_start + 1)
            kind = m.lastgroup
            if kind == "nl":
                line, line_start = line + 1, m.end()
            elif kind != "ws":
                self.tokens.append((kind, m.group(), line, pos - line_start + 1))
            pos = m.end()
        self.tokens.append(("eof", "", line, pos - line_start + 1))
        self.i = 0
        self.values: dict[str, Value] = {}

    # token helpers

    def peek(self, offset: int = 0) -> tuple[str, str, int, int]:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def error(self, message: str, token=None, say_found: bool = True):
        kind, text, line, col = token or self.peek()
        if say_found:
            message += ", found " + ("end of input" if kind == "eof" else repr(text))
        return IRParseError(message, self.text, line, col)

    def next(self) -> tuple[str, str, int, int]:
        token = self.peek()
        self.i += 1
        return token

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] in ("punct", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error(f"expected {text!r}")

    def expect_kind(self, kind: str, what: str) -> str:
        if self.peek()[0] != kind:
            raise self.error(f"expected {what}")
        return self.next()[1]

    def expect_count(self, what: str) -> int:
        """A non-negative integer token (a dimension, a line number)."""
        if self.peek()[0] != "number" or not self.peek()[1].isdigit():
            raise self.error(f"expected {what} (a non-negative integer)")
        return int(self.next()[1])

    def expect_string(self, what: str) -> str:
        token = self.peek()
        text = self.expect_kind("string", what)
        try:
            return json.loads(text)
        except ValueError:
            raise self.error("malformed string escape", token, say_found=False) from None

    def scalar_of(self, value: bool | int | float, dtype: DType, token) -> bool | int | float:
        """`value` as an element of `dtype`; integers and bools must be exactly representable
        (floats round, as a float literal in source code does)."""
        if not dtype.is_float:
            try:
                converted = dtype.numpy.type(value).item()
            except (OverflowError, ValueError):
                converted = None
            if converted is None or converted != value or isinstance(value, float) and (
                    dtype.is_bool or not value.is_integer()):
                raise self.error(f"{format_scalar(value)} is not a value of dtype {dtype}", token,
                                 say_found=False)
            return converted
        return value

    # grammar

    def parse_function(self) -> Function:
        self.expect("func")
        name = self.expect_kind("symbol", "a function name like @f")[1:]
        self.expect("(")
        params = []
        while not self.accept(")"):
            if params:
                self.expect(",")
            token = self.peek()
            self.expect_kind("value", "a parameter like %x")
            params.append(self.define(token, self.parse_after_colon()))
        self.expect("->")
        result_types = self.parse_result_types()
        self.expect("{")
        ops = []
        while not self.accept("return"):
            ops.append(self.parse_op())
        results = []
        if self.peek()[0] == "value":
            results.append(self.use(self.next()))
            while self.accept(","):
                results.append(self.use(self.next()))
        self.expect("}")
        if self.peek()[0] != "eof":
            raise self.error("expected the end of the text after the function")
        if tuple(r.type for r in results) != result_types:
            raise self.error("the returned values' types differ from the signature's",
                             self.tokens[self.i - 2])
        return Function(name, tuple(params), tuple(ops), tuple(results))

    def define(self, token, type_: TensorType) -> Value:
        name = token[1][1:]
        if name in self.values:
            raise self.error(f"value %{name} is defined twice", token, say_found=False)
        value = Value(name, type_)
        self.values[name] = value
        return value

    def use(self, token) -> Value:
        kind, text, *_ = token
        if kind != "value":
            raise self.error("expected a value like %x", token)
        if text[1:] not in self.values:
            raise self.error(f"use of undefined value {text}", token, say_found=False)
        return self.values[text[1:]]

    def parse_after_colon(self) -> TensorType:
        self.expect(":")
        return self.parse_type()

    def parse_dtype(self) -> DType:
        token = self.next()
        if token[1] not in DTYPES:
            raise self.error(f"expected a dtype ({', '.join(DTYPES)})", token)
        return DTYPES[token[1]]

    def parse_type(self) -> TensorType:
        dtype = self.parse_dtype()
        self.expect("[")
        dims = []
        while not self.accept("]"):
            if dims:
                self.expect(",")
            dims.append(self.expect_count("a dimension"))
        return TensorType(dtype, tuple(dims))

    def parse_result_types(self) -> tuple[TensorType, ...]:
        if not self.accept("("):
            return (self.parse_type(),)
        types = []
        while not self.accept(")"):
            if types:
                self.expect(",")
            types.append(self.parse_type())
        return tuple(types)

    def parse_op(self) -> Op:
        result_token = self.peek()
        self.expect_kind("value", "an op like '%r = name ...' or 'return'")
        self.expect("=")
        name = self.expect_kind("ident", "an op name")
        operands: list[Any] = []
        while self.peek()[1] not in ("{", ":"):
            if operands:
                self.expect(",")
            operands.append(self.parse_operand())
        attrs = self.parse_attrs() if self.peek()[1] == "{" else {}
        type_ = self.parse_after_colon()
        loc = self.parse_loc() if self.peek()[1] == "loc" else None
        values = [o for o in operands if isinstance(o, Value)]
        resolved = tuple(self.literal(*o, literal_dtype_at(name, i, values, type_.dtype))
                         if isinstance(o, tuple) else o for i, o in enumerate(operands))
        return Op(name, resolved, attrs, self.define(result_token, type_), loc)

    def parse_operand(self):
        token = self.peek()
        if token[0] == "value":
            return self.use(self.next())
        value = self.parse_scalar()
        dtype = None
        if self.peek()[1] == ":" and self.peek(1)[1] in DTYPES and self.peek(2)[1] != "[":
            self.next()
            dtype = self.parse_dtype()
        return value, dtype, token

    def literal(self, value, dtype: DType | None, token, default: DType) -> Literal:
        dtype = dtype or default
        return Literal(self.scalar_of(value, dtype, token), dtype)

    def parse_scalar(self) -> bool | int | float:
        kind, text, *_ = token = self.next()
        if kind == "ident" and text in ("true", "false"):
            return text == "true"
        if kind == "ident" and text == "nan":
            return math.nan
        if kind == "number":
            return float(text) if any(c in text for c in ".eEn") else int(text)
        raise self.error("expected an operand (a value like %x or a number)", token)

    def parse_attrs(self) -> dict[str, Any]:
        self.expect("{")
        attrs: dict[str, Any] = {}
        while not self.accept("}"):
            if attrs:
                self.expect(",")
            token = self.peek()
            key = self.expect_kind("ident", "an attribute name")
            if key in attrs:
                raise self.error(f"attribute {key!r} is given twice", token, say_found=False)
            self.expect("=")
            attrs[key] = self.parse_attr_value()
        return attrs

    def parse_attr_value(self) -> Any:
        kind, text, *_ = self.peek()
        if text == "[":
            self.next()
            items = []
            while not self.accept("]"):
                if items:
                    self.expect(",")
                items.append(self.parse_attr_value())
            return tuple(items)
        if kind == "string":
            return self.expect_string("a string")
        if kind == "ident" and text in DTYPES:
            return self.parse_dtype()
        if kind == "ident" and text == "dense":
            return self.parse_dense()
        return self.parse_scalar()

    def parse_dense(self) -> DenseConst:
        self.expect("dense")
        self.expect("<")
        type_ = self.parse_type()
        self.expect("[")
        items = []
        while not self.accept("]"):
            if items:
                self.expect(",")
            items.append(self.scalar_of(self.parse_scalar(), type_.dtype, self.tokens[self.i - 1]))
        self.expect(">")
        if len(items) != type_.size:
            raise self.error(f"a dense {type_} needs {type_.size} elements, got {len(items)}",
                             self.tokens[self.i - 1])
        return DenseConst(np.array(items, dtype=type_.dtype.numpy).reshape(type_.shape))

    def parse_loc(self) -> Location:
        self.expect("loc")
        self.expect("(")
        file = self.expect_string("a file name in quotes")
        self.expect(":")
        line = self.expect_count("a line number")
        self.expect(")")
        return Location(file, line)


def parse(text: str) -> Function:
    """Parse IR text into a Function; raises IRParseError (a ValueError) with line and column."""
    return _Parser(text).parse_function()
