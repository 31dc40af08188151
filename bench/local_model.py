"""Benchmark: the local model server's time to first token and decode rate, cold and with llama.cpp's prompt cache.

Starts `LocalServer` (llama.cpp + SmolLM2-135M), sends one ~1,500-token prompt twice as streaming Chat
Completions requests, and prints figures. It asserts nothing.

    .venv/bin/python bench/local_model.py [--prompt-tokens 1500] [--max-tokens 128] [--n-ctx 4096] [--n-threads N]

The first request is cold: nothing before it shares its prefix. The second is the same prompt again, so
llama.cpp reuses the evaluated prefix it still holds and only the output has to be computed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass

import openai
from openai.types.chat import ChatCompletionMessageParam

from goalkeeper.models.local_server import LocalServer

PARAGRAPH = (
    "The cart module computes totals for an online shop. Each line item has a price and a quantity, "
    "and a discount given in percent is applied to the total before tax. A bug report says that a ten "
    "percent discount removes the whole price instead of a tenth of it. "
)
"""Filler text for the prompt; repeated until the prompt has the wanted number of tokens."""


@dataclass(frozen=True)
class Run:
    """One streamed request, timed from the client's side."""

    ttft_s: float
    """Seconds from sending the request to the first content chunk."""
    decode_s: float
    """Seconds from the first to the last content chunk."""
    tokens: int
    """Content chunks received: llama.cpp streams one per token (it sends no usage when streaming)."""
    finish_reason: str | None

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first, over the time they took."""
        return (self.tokens - 1) / self.decode_s if self.decode_s > 0 else float("nan")


def messages(nonce: str, repeats: int) -> list[ChatCompletionMessageParam]:
    """A prompt whose first line is `nonce`, so no earlier request shares more than the template's prefix."""
    return [{"role": "system", "content": f"Session {nonce}. You are a careful assistant."},
            {"role": "user", "content": PARAGRAPH * repeats + "\nSummarise the report above in detail."}]


def prompt_tokens(client: openai.OpenAI, nonce: str, repeats: int) -> int:
    """The server's own count of the prompt's tokens (a one-token request)."""
    answer = client.chat.completions.create(model=LocalServer.model_name, messages=messages(nonce, repeats),
                                            max_tokens=1)
    assert answer.usage is not None
    return answer.usage.prompt_tokens


def repeats_for(client: openai.OpenAI, target: int) -> int:
    """How many paragraphs make a prompt of about `target` tokens, measured with a throwaway nonce."""
    base = prompt_tokens(client, uuid.uuid4().hex, 0)
    ten = prompt_tokens(client, uuid.uuid4().hex, 10)
    per_paragraph = (ten - base) / 10
    return max(1, round((target - base) / per_paragraph))


def streamed(client: openai.OpenAI, nonce: str, repeats: int, max_tokens: int) -> Run:
    """One streaming request at temperature 0."""
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    finish_reason = None
    stream = client.chat.completions.create(model=LocalServer.model_name, messages=messages(nonce, repeats),
                                            max_tokens=max_tokens, temperature=0, stream=True)
    for chunk in stream:
        if not chunk.choices:
            continue
        finish_reason = chunk.choices[0].finish_reason or finish_reason
        if chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
            tokens += 1
    return Run(first - started, last - first, tokens, finish_reason)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-threads", type=int, default=None, help="decode threads (default: llama.cpp's, nproc/2)")
    args = parser.parse_args()
    print(f"machine: nproc={os.cpu_count()} {platform.processor() or platform.machine()}, "
          f"Linux {platform.release()}, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    with LocalServer(n_ctx=args.n_ctx, n_threads=args.n_threads) as server:
        threads = args.n_threads or f"default ({max(1, (os.cpu_count() or 2) // 2)})"
        print(f"server: {server.base_url}, n_ctx={args.n_ctx}, decode threads {threads}, "
              f"ready in {time.perf_counter() - started:.1f}s")
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=600)
        repeats = repeats_for(client, args.prompt_tokens)
        nonce = uuid.uuid4().hex
        runs = [streamed(client, nonce, repeats, args.max_tokens) for _ in ("cold", "cached")]
        size = prompt_tokens(client, nonce, repeats)  # measured last: it would warm the cache for the cold run
    print(f"prompt: {size} tokens (server-reported), max_tokens={args.max_tokens}, temperature 0")
    print(f"{'run':<8} {'TTFT':>9} {'prefill tok/s':>14} {'output tokens':>14} {'finish':>7} {'decode tok/s':>13}")
    for name, run in zip(("cold", "cached"), runs, strict=True):
        # The cached run evaluates no prompt token (llama.cpp holds the whole prefix), so it has no prefill rate.
        prefill = f"{size / run.ttft_s:.0f}" if name == "cold" else "-"
        print(f"{name:<8} {run.ttft_s * 1000:>7.0f}ms {prefill:>14} {run.tokens:>14} {run.finish_reason or '?':>7} "
              f"{run.decode_tokens_per_s:>13.1f}")


if __name__ == "__main__":
    main()
