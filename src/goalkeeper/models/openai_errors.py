"""Turns `openai` SDK exceptions into goalkeeper's provider errors, by exception type and status code.

Shared by every provider built on the SDK (Chat Completions, Responses), so the two can never disagree on
what is worth retrying. It recognises failures by type, status and structured error code, never by the
text of a message.
"""

from __future__ import annotations

import openai

from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.base import Usage
from goalkeeper.models.retry import retry_after_from_headers

_TRANSIENT_STATUS = frozenset({408, 409, 429})
"""4xx statuses worth retrying (timeout, conflict, rate limit); the SDK's own retry rule agrees."""

CONTEXT_LENGTH_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
"""Structured error codes or types for a prompt that does not fit (OpenAI, llama.cpp)."""


def provider_error(error: openai.OpenAIError, *, where: str, timeout_s: float,
                   api_key_env: str | None) -> ProviderError:
    """The goalkeeper error for an SDK error, chosen by type and status code.

    `where` names the model and endpoint for people; `api_key_env` names the variable to fix when the key
    is rejected.
    """
    if isinstance(error, openai.APITimeoutError):
        return TransientProviderError(f"{where}: no answer within {timeout_s:g}s",
                                      hint="retry, or raise the provider timeout")
    if isinstance(error, openai.APIConnectionError):
        return TransientProviderError(f"{where}: the connection failed ({error.__cause__ or error})",
                                      hint="check that the server runs at base_url; else retry")
    if isinstance(error, openai.APIResponseValidationError):
        return TransientProviderError(f"{where}: the response did not match the wire format",
                                      status_code=error.status_code)
    if isinstance(error, openai.APIStatusError):
        return _status_error(error, where, api_key_env)
    if isinstance(error, openai.APIError):
        # An error event inside a stream: the HTTP status was already 200.
        return stream_error(where, code=error.code, kind=error.type, message=error.message)
    return ProviderError(f"{where}: {error}")


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


def _status_error(error: openai.APIStatusError, where: str, api_key_env: str | None) -> ProviderError:
    """Map an HTTP error status (and its structured error body) to a goalkeeper error."""
    status = error.status_code
    detail = f"{where}: HTTP {status}: {_error_message(error)}"
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        key = f"the API key in {api_key_env}" if api_key_env else "the API key"
        return ProviderError(detail, hint=f"{key} is missing or wrong; set it and retry", status_code=status)
    if isinstance(error, openai.NotFoundError):
        return ProviderError(f"{where}: model not found (HTTP 404)",
                             hint="check the model name and base_url", status_code=status)
    if isinstance(error, openai.BadRequestError) and is_context_length(error.code, error.type):
        return ContextLengthError(f"{where}: the request does not fit the context window", status_code=status)
    if status >= 500 or status in _TRANSIENT_STATUS:
        return TransientProviderError(detail, status_code=status,
                                      retry_after_s=retry_after_from_headers(error.response.headers))
    return ProviderError(detail, hint="the provider refused the request", status_code=status)


def _error_message(error: openai.APIStatusError) -> str:
    """The provider's own message from the error body, for people to read."""
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return error.message
