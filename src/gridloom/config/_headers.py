"""Validators of a provider's header settings: ``api_key_header`` and ``headers_env``."""

from __future__ import annotations

import re
from typing import Any

import attrs

__all__ = ["check_headers_env", "check_key_header"]

#: An HTTP header name (RFC 9110 ``token``).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_key_header(inst: Any, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise ValueError(
            "api_key_header must be an HTTP header name (letters, digits and"
            f" !#$%&'*+-.^_`|~, no spaces or colon), such as 'api-key'; got {value!r}"
        )
    if not inst.api_key_env:
        raise ValueError(
            f"api_key_header {value!r} says how the key in api_key_env is sent, but provider"
            f" {inst.name!r} names no api_key_env"
        )
    if any(str(name).lower() == value.lower() for name in inst.headers):
        raise ValueError(
            f"api_key_header {value!r} is also set in headers: the key goes in that header;"
            " remove it from headers"
        )


def check_headers_env(inst: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    taken = {str(name).lower() for name in inst.headers}
    if inst.api_key_header:
        taken.add(inst.api_key_header.lower())
    for header, variable in value.items():
        if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header):
            raise ValueError(
                f"headers_env: {header!r} is not an HTTP header name (letters, digits and"
                " !#$%&'*+-.^_`|~, no spaces or colon)"
            )
        if not isinstance(variable, str) or not variable or "=" in variable or "\0" in variable:
            raise ValueError(
                f"headers_env: header {header!r} needs the name of an environment variable,"
                f" got {variable!r}"
            )
        if header.lower() in taken:
            raise ValueError(
                f"headers_env: header {header!r} is also set in headers or api_key_header"
            )
