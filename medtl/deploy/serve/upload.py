"""Uploads parsed in memory: a multipart/form-data body (already bounded by the request limit) into its files.

Starlette's own form parser spools parts above 1 MB to temporary files; a service for medical images writes nothing
to disk, so the body is parsed here with python-multipart's streaming parser, which the serve extra installs."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import DataError

MAX_PARTS = 256  # files or fields in one request: medtl predict reads 256 files at a time too


@dataclass
class Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    chunks: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


def boundary_of(content_type: str) -> bytes | None:
    """The multipart boundary of a ``multipart/form-data`` content type, or None for any other type."""
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type)
    return options.get(b"boundary") if kind == b"multipart/form-data" else None


def parse(body: bytes, boundary: bytes) -> list[Part]:
    """The parts of ``body`` (a DataError for a malformed body or too many parts)."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    parts: list[Part] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    headers: dict[str, str] = {}

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise DataError(f"a request holds at most {MAX_PARTS} files; send the rest in another request.")
        parts.append(Part())
        headers.clear()

    def field_data(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def value_data(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def header_end() -> None:
        headers[header["field"].decode("latin-1").lower()] = header["value"].decode("latin-1")
        header["field"] = header["value"] = b""

    def headers_done() -> None:
        _, options = parse_options_header(headers.get("content-disposition", ""))
        part = parts[-1]
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        part.content_type = headers.get("content-type", "")

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": field_data,
                                        "on_header_value": value_data, "on_header_end": header_end,
                                        "on_headers_finished": headers_done, "on_part_data": part_data})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise DataError(f"the multipart body is malformed ({e}).") from None
    return parts
