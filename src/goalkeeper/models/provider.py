"""The part every HTTP provider shares: construction, the stream-or-whole switch, and error mapping.

A provider (openai_chat.py, openai_responses.py, anthropic_messages.py) keeps only its wire format: the
body it posts, how it reads an answer whole or streamed, and how its API marks a prompt that does not fit.
The openai and anthropic SDKs are generated alike, so one mapping over their exception classes (`SdkErrors`)
serves both. Failures are recognised by exception type, status and structured code, never by the text of a
message. Nothing here retries (retry.py does).
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.base import ModelRequest, ModelResponse
from goalkeeper.models.retry import retry_after_from_headers

NO_API_KEY = "no-api-key"
"""Sent when no key is configured: local servers ignore it, and a real provider answers 401."""

TRANSIENT_STATUS = frozenset({408, 409, 429})
"""4xx statuses worth retrying (timeout, conflict, rate limit); 5xx always are (529 overloaded too)."""



def shared_tls() -> ssl.SSLContext:
    """One TLS context for every provider client of this process, as the SDKs' HTTP client makes it (the CA
    bundle, SSL_CERT_FILE / SSL_CERT_DIR honoured): loading the bundle costs ~20 ms of CPU a client, which a
    batch of 100 goals, each with its own client, would pay 100 times. A context is safe to share between
    threads and event loops. Made under a lock: the first goals of a batch build their clients at once."""
    with _TLS_LOCK:
        return _made_tls()


_TLS_LOCK = threading.Lock()


@functools.cache
def _made_tls() -> ssl.SSLContext:
    import httpx2  # the SDKs' HTTP stack: loaded with them, never on a read path

    return httpx2.create_ssl_context()

class Client(Protocol):
    """What the base needs of an SDK client: where it points, and closing it."""

    @property
    def base_url(self) -> Any: ...

    async def close(self) -> None: ...


C = TypeVar("C", bound=Client)


@dataclass(frozen=True)
class SdkErrors:
    """One SDK's exception classes, by the part they play."""

    base: type[Exception]
    timeout: type[Exception]
    connection: type[Exception]
    validation: type[Exception]
    """A response that did not match the wire format."""
    status: type[Exception]
    """An HTTP error status; it carries `status_code` and `response`."""
    key_refused: tuple[type[Exception], ...]
    not_found: type[Exception]


class Provider(ABC, Generic[C]):
    """A `Model` over one SDK client, streaming or not; subclasses supply the wire format."""

    errors: ClassVar[SdkErrors]
    malformed: ClassVar[tuple[type[Exception], ...]] = (json.JSONDecodeError,)
    """Exceptions that mean the body was not the JSON the wire format promises."""

    def __init__(self, model: str, client: C, *, stream: bool, timeout_s: float, api_key_env: str | None) -> None:
        self.name = model
        self.stream = stream
        self.timeout_s = timeout_s
        self.api_key_env = api_key_env
        """Only used to name the variable in the error when the key is rejected."""
        self._client = client

    @property
    def where(self) -> str:
        """The model and endpoint, as error messages name them."""
        return f"{self.name} at {str(self._client.base_url).rstrip('/')}"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Sample one response; provider failures come out as `ProviderError` subclasses."""
        try:
            if self.stream:
                return await self._complete_streaming(request)
            return await self._complete_whole(request)
        except self.errors.base as error:
            raise self.provider_error(error) from error
        except self.malformed as error:
            raise self._malformed(error) from error

    async def aclose(self) -> None:
        """Close the HTTP client and its connections."""
        await self._client.close()

    @abstractmethod
    async def _complete_whole(self, request: ModelRequest) -> ModelResponse:
        """One non-streaming request."""

    @abstractmethod
    async def _complete_streaming(self, request: ModelRequest) -> ModelResponse:
        """One streaming request, assembled from its events."""

    def _malformed(self, error: Exception) -> ProviderError:
        """The error for a body that is not JSON."""
        why = f" ({error.msg})" if isinstance(error, json.JSONDecodeError) else ""
        return TransientProviderError(f"{self.name}: the provider sent malformed JSON{why}",
                                      hint="retry; if it persists, check the base_url")

    def provider_error(self, error: Exception) -> ProviderError:
        """The goalkeeper error for an SDK error, chosen by type and status code."""
        where, errors = self.where, self.errors
        if isinstance(error, errors.timeout):
            return TransientProviderError(f"{where}: no answer within {self.timeout_s:g}s",
                                          hint="retry, or raise the provider timeout")
        if isinstance(error, errors.connection):
            return TransientProviderError(f"{where}: the connection failed ({error.__cause__ or error})",
                                          hint="check that the server runs at base_url; else retry")
        if isinstance(error, errors.validation):
            return TransientProviderError(f"{where}: the response did not match the wire format",
                                          status_code=getattr(error, "status_code", None))
        if isinstance(error, errors.status):
            return self._status_error(error)
        return self._other_error(error)

    def _status_error(self, error: Exception) -> ProviderError:
        """Map an HTTP error status (and its structured error body) to a goalkeeper error."""
        where, status = self.where, int(getattr(error, "status_code", 0))
        detail = f"{where}: HTTP {status}{self._status_detail(error)}"
        if isinstance(error, self.errors.key_refused):
            key = f"the API key in {self.api_key_env}" if self.api_key_env else "the API key"
            return ProviderError(detail, hint=f"{key} is missing or wrong; set it and retry", status_code=status)
        if isinstance(error, self.errors.not_found):
            return ProviderError(f"{where}: model not found (HTTP 404)",
                                 hint="check the model name and base_url", status_code=status)
        if self._too_long(error):
            return ContextLengthError(self._too_long_message(detail), status_code=status)
        if status >= 500 or status in TRANSIENT_STATUS:
            headers: Mapping[str, str] = getattr(error, "response").headers  # noqa: B009 (typed by the SDK)
            return TransientProviderError(detail, status_code=status, retry_after_s=retry_after_from_headers(headers))
        return ProviderError(detail, hint="the provider refused the request", status_code=status)

    def _other_error(self, error: Exception) -> ProviderError:
        """An SDK error that is neither transport nor status."""
        return ProviderError(f"{self.where}: {error}")

    def _too_long_message(self, detail: str) -> str:
        return f"{self.where}: the request does not fit the context window"

    @abstractmethod
    def _status_detail(self, error: Exception) -> str:
        """What follows `HTTP <status>` in an error: the provider's own words from the error body."""

    @abstractmethod
    def _too_long(self, error: Exception) -> bool:
        """Whether an HTTP error says the prompt does not fit the context window."""


def fallback_call_id(position: int) -> str:
    """An id for a tool call the server sent without one; tool results must name their call."""
    return f"call_{position}_{uuid.uuid4().hex[:12]}"
