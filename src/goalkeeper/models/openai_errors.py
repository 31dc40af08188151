"""What the two providers built on the `openai` SDK (Chat Completions, Responses) share: the client they
construct and how the SDK's errors read, so the two can never disagree on what is worth retrying.

It recognises failures by type, status and structured error code, never by the text of a message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import openai

from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.base import Usage
from goalkeeper.models.provider import NO_API_KEY, Provider, SdkErrors, shared_tls

T = TypeVar("T")

CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
"""Structured error codes or types for a prompt that does not fit (OpenAI, llama.cpp)."""

OPENAI_ERRORS = SdkErrors(base=openai.OpenAIError, timeout=openai.APITimeoutError,
                          connection=openai.APIConnectionError, validation=openai.APIResponseValidationError,
                          status=openai.APIStatusError,
                          key_refused=(openai.AuthenticationError, openai.PermissionDeniedError),
                          not_found=openai.NotFoundError)


class OpenAIProvider(Provider[openai.AsyncOpenAI]):
    """A provider over `openai.AsyncOpenAI`; subclasses supply the wire format."""

    errors = OPENAI_ERRORS

    def __init__(self, model: str, base_url: str | None, api_key: str | None, *, stream: bool = False,
                 timeout_s: float = 120.0, extra_headers: dict[str, str] | None = None,
                 query_params: dict[str, str] | None = None, api_key_env: str | None = None) -> None:
        client = openai.AsyncOpenAI(
            api_key=api_key or NO_API_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # retries are ours (retry.py), with our policy and our budget
            default_headers=extra_headers,
            default_query=query_params,  # e.g. Azure's api-version
            http_client=openai.DefaultAsyncHttpxClient(verify=shared_tls()),
        )
        super().__init__(model, client, stream=stream, timeout_s=timeout_s, api_key_env=api_key_env)

    async def _drain(self, stream: openai.AsyncStream[T], take: Callable[[T], None]) -> None:
        """Feed each event of `stream` to `take`, then close it; a connection cut mid-stream is worth a retry."""
        try:
            async for event in stream:
                take(event)
        except openai.APITimeoutError:
            raise  # a read timeout mid-stream reads as a timeout, mapped with the others
        except openai.APIConnectionError as error:
            raise TransientProviderError(f"{self.where}: stream ended mid-response (connection lost)",
                                         hint="retry; the server or a proxy cut the stream") from error
        finally:
            await stream.close()

    def _status_detail(self, error: Exception) -> str:
        body = getattr(error, "body", None)
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return f": {body['message']}"
        return f": {getattr(error, 'message', error)}"

    def _too_long(self, error: Exception) -> bool:
        return isinstance(error, openai.BadRequestError) and is_context_length(error.code, error.type)

    def _other_error(self, error: Exception) -> ProviderError:
        if isinstance(error, openai.APIError):
            # An error event inside a stream: the HTTP status was already 200.
            return stream_error(self.where, code=error.code, kind=error.type, message=error.message)
        return super()._other_error(error)


def stream_error(where: str, *, code: str | None, kind: str | None, message: str,
                 usage: Usage | None = None) -> ProviderError:
    """The error for a failure the provider reported inside a response that began with HTTP 200.

    Only a context-length code is final; anything else mid-response is treated as worth retrying.
    """
    if is_context_length(code, kind):
        return ContextLengthError(f"{where}: the request does not fit the context window", usage=usage)
    return TransientProviderError(f"{where}: the provider reported an error mid-stream: {message}", usage=usage)


def is_context_length(code: str | None, kind: str | None = None) -> bool:
    """True when a structured error code or type says the prompt is too long (never the message text)."""
    return code in CONTEXT_LENGTH_CODES or kind in CONTEXT_LENGTH_CODES
