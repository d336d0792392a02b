"""The simulated endpoint's multipart form reader (file uploads to the batch API)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridloom.simulated._multipart import MultipartError, boundary_of, parse_form


@given(purpose=st.text(min_size=1, max_size=40), data=st.binary(max_size=2_000))
def test_forms_httpx_encodes_read_back(purpose: str, data: bytes) -> None:
    """Any form httpx encodes (a text field and a file) reads back field by field."""
    request = httpx.Request(
        "POST",
        "http://x/v1/files",
        data={"purpose": purpose},
        files={"file": ("in.jsonl", data, "application/jsonl")},
    )
    form = parse_form(request.read(), boundary_of(request.headers["content-type"]))
    assert form["purpose"] == (purpose.encode(), None)
    assert form["file"] == (data, "in.jsonl")


@given(body=st.binary(max_size=500))
def test_arbitrary_bodies_parse_or_are_refused(body: bytes) -> None:
    """Whatever the body, the reader returns fields or raises MultipartError, nothing else."""
    try:
        form = parse_form(body, b"XyZ")
    except MultipartError:
        return
    assert isinstance(form, dict)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data", "multipart/form-data; boundary="],
)
def test_content_types_without_a_boundary_are_refused(content_type: str) -> None:
    """A content type that is not multipart, or names no boundary, is refused."""
    with pytest.raises(MultipartError):
        boundary_of(content_type)


def test_too_many_parts_are_refused() -> None:
    """A form of more parts than the limit is refused before its parts are read."""
    part = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n'
    with pytest.raises(MultipartError, match="at most"):
        parse_form(part * 17 + b"--b--\r\n", b"b")
