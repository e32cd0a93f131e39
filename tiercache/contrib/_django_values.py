"""What Django's own caches store, as msgpack types every process can read: no pickle.

``cache_page`` stores responses, ``{% cache %}`` safe strings, forms and views lazy strings.
Each is registered with the codec (``tiercache.register_type``) under a fixed name, so a
process that imports ``tiercache.contrib.django`` reads what another wrote. What a reader gets
back: a plain ``HttpResponse`` (status, reason, headers, cookies and content as they were; the
subclass, a template or a JSON encoder are not carried), a ``SafeString``, a ``str`` (a lazy
string is translated as it is written, in the writer's active language). Model instances and
QuerySets still stay in the process's L1 only: only pickle carries them, and bytes from Redis
are never unpickled.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils.functional import Promise
from django.utils.safestring import SafeString

from tiercache._l2.codec import UnencodableError, register_type

__all__ = ["register_django_types"]


def _encode_response(response: HttpResponse) -> list[Any]:
    # (A TemplateResponse not rendered yet raises here: it stays in L1, as it would not pickle.)
    return [
        response.status_code,
        response.reason_phrase,
        bytes(response.content),
        [[name, value] for name, value in response.headers.items()],
        [morsel.OutputString() for morsel in response.cookies.values()],
    ]


def _decode_response(fields: Any) -> HttpResponse:
    status, reason, content, headers, cookies = fields
    if not (
        type(status) is int
        and type(reason) is str
        and type(content) is bytes
        and all(
            type(pair) is list and len(pair) == 2 and all(type(p) is str for p in pair) for pair in headers
        )
        and all(type(cookie) is str for cookie in cookies)
    ):
        raise ValueError("a stored response of the wrong shape")
    response = HttpResponse(content, status=status, reason=reason)
    for name, value in headers:
        response.headers[name] = value
    for cookie in cookies:
        response.cookies.load(cookie)
    return response


def _encode_lazy(value: Promise) -> str:
    # A lazy string is written as its text now; another lazy value cannot be rebuilt from text.
    func_args_kwargs_resultclasses = value.__reduce__()[1]
    if str not in func_args_kwargs_resultclasses[3:]:
        raise UnencodableError(type(value).__qualname__, "a lazy value that is not a string")
    return str(value)


def _decode_str(text: Any) -> str:
    if type(text) is not str:
        raise ValueError("a stored string that is not one")
    return text


def _decode_safe(text: Any) -> SafeString:
    return SafeString(_decode_str(text))


def register_django_types() -> None:
    """Let responses, safe strings and lazy strings reach L2 (idempotent)."""
    register_type(
        HttpResponse, _encode_response, _decode_response, name="django.HttpResponse", subclasses=True
    )
    register_type(SafeString, str, _decode_safe, name="django.SafeString")
    register_type(Promise, _encode_lazy, _decode_str, name="django.lazy-str", subclasses=True)
