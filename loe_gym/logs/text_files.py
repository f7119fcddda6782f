"""Delimited text files as an import reads them: any delimiter (one character, or several
such as MovieLens 1M's ``::``), with or without a header row, in any text encoding, with
errors that name the file, the line and the fix.

pyarrow's CSV reader takes one-character delimiters only. A longer one is replaced, in the
bytes of the file, by a control character the file does not hold, and pyarrow parses the
result: one pass over the bytes, no Python loop per line. For an encoding in which the
delimiter is not plain ASCII bytes (UTF-16), the text is decoded and re-encoded as UTF-8
first.
"""

from __future__ import annotations

import contextlib
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.csv as pa_csv

__all__ = ["TextFormat", "delimiter_hint"]

_STAND_INS: Final = ("\x1f", "\x1e", "\x1d", "\x1c", "\x01", "\x02", "\x03")
"""Control characters that stand in for a multi-character delimiter, the first absent one."""
_DELIMITERS: Final = ("::", "\t", "|", ";", ",")
"""Delimiters of common log files, for hints when a file is read with the wrong one."""


class LogImportError(ValueError):
    """An input file cannot be imported: the message names the file, row and column."""


def _describe(delimiter: str) -> str:
    return "a tab" if delimiter == "\t" else repr(delimiter)


def delimiter_hint(text: str, delimiter: str, fix: str) -> str:
    """A sentence suggesting the delimiter ``text`` (a line of the file) seems to use, or
    ""; ``fix`` is how to set it (``--mapping '{"delimiter": ...}'``)."""
    for candidate in _DELIMITERS:
        if candidate != delimiter and candidate in text and candidate not in delimiter:
            return (
                f" The line holds {_describe(candidate)} but is read with the delimiter "
                f"{_describe(delimiter)}: if the fields are separated by "
                f"{_describe(candidate)}, set {fix.replace('<delimiter>', json.dumps(candidate))}."
            )
    return ""


@dataclass(frozen=True)
class TextFormat:
    """How a delimited text file is written.

    Attributes:
        delimiter: separates the fields (one character or more).
        column_names: names of the columns when the file has no header row; empty:
            the first line is the header.
        encoding: the text encoding.
        quoted: fields may be quoted with ``"``.
        multiline: quoted fields may span lines (slower: parsed on one thread).
        scope: ``""`` for interaction files, ``"items"`` for item tables: where the
            fields are set in ``--mapping`` (for the fix in messages).
    """

    delimiter: str = ","
    column_names: tuple[str, ...] = ()
    encoding: str = "utf-8"
    quoted: bool = True
    multiline: bool = False
    scope: str = ""

    @classmethod
    def of(cls, path: Path, mapping: Any, *, scope: str = "") -> TextFormat:
        """The format of ``path`` under a mapping's ``delimiter``, ``column_names``,
        ``encoding`` and ``quoted`` (the delimiter by extension when None)."""
        delimiter = mapping.delimiter
        if delimiter is None:
            delimiter = "\t" if ".tsv" in path.name.lower() else ","
        return cls(
            delimiter=delimiter,
            column_names=tuple(mapping.column_names),
            encoding=mapping.encoding,
            quoted=mapping.quoted,
            multiline=scope == "items",
            scope=scope,
        )

    @property
    def header(self) -> bool:
        """The first line names the columns."""
        return not self.column_names

    def fix(self, field: str, value: str) -> str:
        """How to set ``field`` to ``value`` on the command line."""
        if self.scope:
            return f'--mapping \'{{"{self.scope}": {{"{field}": {value}}}}}\''
        return f"--mapping '{{\"{field}\": {value}}}'"


class TextFile:
    """One delimited text file, parsed by pyarrow whatever its delimiter and encoding."""

    def __init__(self, path: Path, text_format: TextFormat) -> None:
        self.path = path
        self.format = text_format
        self._buffer: pa.Buffer | None = None
        self._stand_in = text_format.delimiter
        self._encoding = text_format.encoding

    def _raw(self) -> bytes:
        with pa.input_stream(str(self.path), compression="detect") as stream:
            return bytes(stream.read())

    def _input(self) -> Any:
        """What pyarrow reads: the path, or a buffer with a one-character delimiter."""
        delimiter = self.format.delimiter
        if len(delimiter) == 1:
            return str(self.path)
        if self._buffer is None:
            data = self._raw()
            encoding = self.format.encoding
            if delimiter.encode(encoding, errors="replace") != delimiter.encode("ascii"):
                # Not ASCII-compatible (UTF-16): decode, then parse UTF-8.
                data = self._decode(data).encode("utf-8")
                self._encoding = "utf-8"
            stand_in = next((c for c in _STAND_INS if c.encode() not in data), None)
            if stand_in is None:
                raise LogImportError(
                    f"{str(self.path)!r} holds every control character that could stand in "
                    f"for the delimiter {delimiter!r}; convert it to a one-character delimiter."
                )
            self._stand_in = stand_in
            self._buffer = pa.py_buffer(data.replace(delimiter.encode(), stand_in.encode()))
        return pa.BufferReader(self._buffer)

    def _decode(self, data: bytes) -> str:
        try:
            return data.decode(self.format.encoding)
        except UnicodeDecodeError as error:
            raise self._encoding_error(data, error) from None

    def _options(self) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions]:
        source = self._input()  # sets the stand-in and the encoding
        del source
        read = pa_csv.ReadOptions(
            use_threads=not self.format.multiline,
            column_names=list(self.format.column_names) or None,
            encoding=self._encoding,
        )
        parse = pa_csv.ParseOptions(
            delimiter=self._stand_in,
            quote_char='"' if self.format.quoted else False,
            newlines_in_values=self.format.multiline,
        )
        return read, parse

    def column_names(self) -> list[str]:
        """The names of the file's columns (the header, or ``column_names``)."""
        if not self.format.header:
            return list(self.format.column_names)
        read, parse = self._options()
        source = self._input()
        if isinstance(source, pa.BufferReader):
            # The header line parsed here: pyarrow's streaming reader over an in-memory
            # buffer left a read-ahead thread that aborted the process at exit once torch
            # was loaded ("terminate called without an active exception").
            return self._buffer_header()
        try:
            reader = pa_csv.open_csv(source, read_options=read, parse_options=parse)
        except (pa.ArrowInvalid, UnicodeDecodeError) as error:
            if self.path.stat().st_size == 0 or "empty" in str(error).lower():
                raise LogImportError(
                    f"{str(self.path)!r} is empty (no header, no rows). Remove it from the "
                    "sources or fill it."
                ) from None
            raise self.unreadable(error) from None
        try:
            names = reader.schema.names
            return [name.replace(self._stand_in, self.format.delimiter) for name in names]
        finally:
            reader.close()

    def _buffer_header(self) -> list[str]:
        """The header of a multi-character-delimited file (its buffer, the stand-in for
        the delimiter in place)."""
        assert self._buffer is not None
        data = self._buffer.to_pybytes()
        end = data.find(b"\n")
        line = (data if end < 0 else data[:end]).decode(self._encoding).lstrip("\ufeff")
        if not line.strip():
            raise LogImportError(
                f"{str(self.path)!r} is empty (no header, no rows). Remove it from the "
                "sources or fill it."
            )
        quoting = {"quotechar": '"'} if self.format.quoted else {"quoting": csv.QUOTE_NONE}
        names = next(csv.reader([line.rstrip("\r")], delimiter=self._stand_in, **quoting))
        return [name.replace(self._stand_in, self.format.delimiter) for name in names]

    def read(self, columns: list[str]) -> pa.Table:
        """The ``columns`` of the file, as text (converted by the caller, which then
        names the row of a bad value)."""
        read, parse = self._options()
        convert = pa_csv.ConvertOptions(
            include_columns=columns, column_types=dict.fromkeys(columns, pa.string())
        )
        try:
            return pa_csv.read_csv(
                self._input(), read_options=read, parse_options=parse, convert_options=convert
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as error:
            raise self.unreadable(error) from None

    def line_of(self, row: int) -> int:
        """The line of the 0-based data row ``row`` (without multi-line values)."""
        return row + (2 if self.format.header else 1)

    def unreadable(self, error: Exception) -> LogImportError:
        """The error for a file pyarrow cannot parse: the bad line and the fix."""
        if "empty csv" in str(error).lower():
            return LogImportError(
                f"{str(self.path)!r} is empty: it has no data rows. Remove it from the "
                "sources or fill it."
            )
        if isinstance(error, UnicodeDecodeError) or "UTF8" in str(error):
            data = self._raw()
            try:
                data.decode(self.format.encoding)
            except UnicodeDecodeError as decode_error:
                return self._encoding_error(data, decode_error)
        invalid: list[Any] = []

        def handler(row: Any) -> str:
            invalid.append(row)
            return "error"

        # Single-threaded, the parser knows the line number of a bad row.
        read, parse = self._options()
        read.use_threads = False
        parse.invalid_row_handler = handler
        with contextlib.suppress(pa.ArrowInvalid, UnicodeDecodeError):
            pa_csv.read_csv(self._input(), read_options=read, parse_options=parse)
        if invalid and invalid[0].number is not None:
            row = invalid[0]
            text = str(row.text).replace(self._stand_in, self.format.delimiter)
            where = "the header has" if self.format.header else "column_names names"
            data_row = row.number - 1 if self.format.header else row.number
            fix = self.format.fix("delimiter", "<delimiter>")
            return LogImportError(
                f"{str(self.path)!r} row {data_row} (line {row.number}): "
                f"{row.actual_columns} fields where {where} {row.expected_columns} (fields "
                f"separated by {_describe(self.format.delimiter)}): {text!r}. Fix the line "
                "(quote fields that contain the delimiter)."
                + delimiter_hint(text, self.format.delimiter, fix)
            )
        return LogImportError(f"{str(self.path)!r} cannot be read as delimited text: {error}")

    def _encoding_error(self, data: bytes, error: UnicodeDecodeError) -> LogImportError:
        line = data.count(b"\n", 0, error.start) + 1
        start = data.rfind(b"\n", 0, error.start) + 1
        column = error.start - start + 1
        others = [name for name in ("utf-8", "latin-1") if name != self.format.encoding]
        return LogImportError(
            f"{str(self.path)!r} line {line}, character {column}: the byte "
            f"0x{data[error.start]:02x} is not {self.format.encoding} text. Set the file's "
            f"encoding, e.g. {self.format.fix('encoding', json.dumps(others[0]))} "
            "(MovieLens 100k and 1M item files are latin-1), or re-save the file as UTF-8."
        )
