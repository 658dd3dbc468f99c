"""perfagent's only door to language models.

Real calls go through `litellm.completion`, so any provider works (OpenAI, Anthropic, a local vLLM or Ollama via
`api_base`). `ScriptedModel` replays recorded answers for tests and demos. `Session` ties a model to a `Budget` and a
`Trajectory` file that records every exchange.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from perfagent.record import file_lock, write_json

# Sent to key-less local servers because the provider SDKs refuse to run without some key.
LOCAL_PLACEHOLDER_KEY = "no-key-needed"


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None when the model's price is unknown
    model: str
    seconds: float


class ModelError(RuntimeError):
    """A model call failed (after retries); the message says why."""


class ModelConfigError(ModelError):
    """The model cannot be called as configured (missing or rejected API key, unknown provider, bad script file)."""


class BudgetExceeded(RuntimeError):
    pass


class ScriptExhausted(RuntimeError):
    pass


class Model(Protocol):
    name: str

    def complete(self, messages: list[dict]) -> Reply: ...

    def complete_many(self, messages: list[dict], n: int) -> list[Reply]:
        """Up to n different replies to the same messages (fewer when a recorded session runs out)."""


@functools.cache
def _litellm():
    """Import litellm on first use (it is slow to import), offline and quiet."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)
    return litellm


def count_tokens(model: str, messages: list[dict]) -> int:
    """Tokens of `messages` by litellm's count for `model` (its tokenizer when litellm knows it, else tiktoken's
    cl100k_base, which is close for code). The offline models have no tokenizer: their count is the one their
    replies report (offline_tokens), and litellm, seconds to import, is not loaded for them."""
    if model.startswith(("scripted:", "oracle:")):
        return offline_tokens(messages)
    return _litellm().token_counter(model=model, messages=messages)


def offline_tokens(messages: list[dict]) -> int:
    """A scripted or oracle model's token count: 4 characters a token, about what tokenizers give for code."""
    return sum(len(str(m.get("content") or "")) for m in messages) // 4


def _is_local(api_base: str | None) -> bool:
    """True when api_base is on this machine or a private network (a self-hosted server needing no key)."""
    host = urlsplit(api_base).hostname if api_base else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_private  # includes loopback
    except ValueError:
        return False


def _is_transient(exc: Exception) -> bool:
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    return (getattr(exc, "status_code", None) or 0) >= 500


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first: litellm reports a refused connection or a reply that is
    not JSON as "InternalServerError (HTTP 500)", and the true cause is further down."""
    chain = []
    while exc is not None and exc not in chain and len(chain) < 20:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def _failure_reason(exc: Exception, timeout: float) -> str:
    import openai

    causes = _causes(exc)
    root = causes[-1]
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "connection refused: nothing listens at that address (is the server running? is the port right?)"
    if any(isinstance(e, (openai.APITimeoutError, TimeoutError)) for e in causes):
        return f"no reply within {timeout:g} s"
    if any(isinstance(e, json.JSONDecodeError) for e in causes):
        return "the server's reply is not JSON: is it an OpenAI-compatible endpoint (usually ending in /v1)?"
    if any(isinstance(e, openai.APIConnectionError) for e in causes):
        return f"cannot reach the server: {type(root).__name__}: {root}"
    detail = getattr(exc, "message", None) or str(exc)
    status = getattr(exc, "status_code", None)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return f"the API key was rejected (HTTP {status}), check it: {detail}"
    if isinstance(exc, openai.RateLimitError):
        return f"rate limited (HTTP {status}): {detail}"
    if isinstance(exc, openai.NotFoundError):
        return f"model or endpoint not found (HTTP {status}): {detail}"
    if isinstance(exc, openai.BadRequestError):
        return f"request rejected (HTTP {status}): {detail}"
    return f"server error (HTTP {status}): {detail}"


class LiteLLMModel:
    """A real model behind litellm. Transient failures (timeouts, connection errors, rate limits, HTTP 5xx) are
    retried `num_retries` times with exponential back-off starting at `retry_delay` seconds."""

    retry_delay = 0.5

    # size: the model, then keyword-only connection options (litellm's own), each with a default
    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        num_retries: int = 3,
        temperature: float | None = None,
        prices: tuple[float, float] | None = None,
    ):
        self.name = model
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.num_retries = num_retries
        self.temperature = temperature
        self.prices = prices  # USD per million input and output tokens; None: litellm's price table

    def priced(self) -> bool:
        """Whether a reply's cost can be known: prices given, or the model is in litellm's price table (local
        servers and models newer than the table are not)."""
        if self.prices:
            return True
        try:
            info = _litellm().get_model_info(self.name)
        except Exception:  # litellm raises assorted errors for models missing from its price map
            return False
        return info.get("input_cost_per_token") is not None

    def require_price(self) -> None:
        """A USD budget needs to know what a reply costs."""
        if not self.priced():
            raise ModelConfigError(
                f"a USD budget cannot hold for {self.name!r}: litellm has no price for it (a local server or a newer "
                f"model). Give its prices with --price-input-per-mtok and --price-output-per-mtok (USD per million "
                f"tokens; price-input-per-mtok / price-output-per-mtok in [tool.perfagent], or --set for batch), "
                f"or limit it with --max-calls or --max-tokens instead")

    def _environment(self) -> tuple[list[str], bool]:
        """The environment variables litellm misses for this model, and whether its server is local."""
        litellm = _litellm()
        try:
            *_, provider_base = litellm.get_llm_provider(self.name, api_base=self.api_base)
        except litellm.exceptions.BadRequestError as exc:
            raise ModelConfigError(
                f"unknown provider for model {self.name!r}: name it as 'provider/model', e.g. 'openai/gpt-4o-mini' "
                f"or 'anthropic/claude-3-5-sonnet-20240620'"
            ) from exc
        missing = litellm.validate_environment(model=self.name, api_base=self.api_base)["missing_keys"]
        return missing, _is_local(self.api_base or provider_base)

    def check_environment(self) -> None:
        """Raise ModelConfigError naming the environment variables to set if the model cannot be called."""
        missing, local = self._environment()
        if missing and not self.api_key and not local:
            raise ModelConfigError(
                f"model {self.name!r} needs {' and '.join(missing)}: set {'them' if len(missing) > 1 else 'it'} "
                f"in the environment (a local server given with --api-base needs no key)"
            )

    def _request(self, messages: list[dict]) -> dict:
        api_key = self.api_key
        if api_key is None:
            missing, local = self._environment()
            if missing and local:
                api_key = LOCAL_PLACEHOLDER_KEY
        request = dict(
            model=self.name,
            messages=messages,
            api_base=self.api_base,
            api_key=api_key,
            timeout=self.timeout,
            num_retries=0,  # retries happen in complete(): litellm's own retry needs tenacity and retries 4xx too
            max_retries=0,  # ...and the provider SDK must not retry underneath either
        )
        if self.temperature is not None:
            request["temperature"] = self.temperature
        return request

    def complete(self, messages: list[dict]) -> Reply:
        return self._complete(self._request(messages))[0]

    def complete_many(self, messages: list[dict], n: int) -> list[Reply]:
        """One request with `n`; a provider that returns fewer choices gets parallel single requests for the rest."""
        replies = self._complete({**self._request(messages), **({"n": n} if n > 1 else {})})[:n]
        if len(replies) < n:
            with ThreadPoolExecutor(n - len(replies)) as pool:
                more = pool.map(lambda _: self._complete(self._request(messages))[0], range(n - len(replies)))
                replies += list(more)
        return replies

    def _complete(self, request: dict) -> list[Reply]:
        """Every choice of one request; the request's tokens, cost and time go with the first."""
        import openai

        self.check_environment()
        start = time.perf_counter()
        for attempt in range(self.num_retries + 1):
            try:
                response = _litellm().completion(**request)
                break
            except openai.OpenAIError as exc:
                if attempt == self.num_retries or not _is_transient(exc):
                    raise self._error(exc, attempts=attempt + 1) from exc
                time.sleep(self.retry_delay * 2**attempt)
        first = self._reply(response, seconds=time.perf_counter() - start)
        return [first] + [Reply(choice.message.content or "", 0, 0, cost_usd=0.0, model=self.name, seconds=0.0)
                          for choice in response.choices[1:]]

    def _error(self, exc: Exception, attempts: int) -> ModelError:
        import openai

        where = f" at {self.api_base}" if self.api_base else ""
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        message = f"model {self.name!r}{where}: {_failure_reason(exc, self.timeout)}{tries}"
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return ModelConfigError(message)
        return ModelError(message)

    def _reply(self, response, seconds: float) -> Reply:
        usage = getattr(response, "usage", None)
        return Reply(
            text=response.choices[0].message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cost_usd=self._cost(response, usage),
            model=self.name,
            seconds=seconds,
        )

    def _cost(self, response, usage) -> float | None:
        if self.prices:
            tokens_in, tokens_out = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
            return (tokens_in * self.prices[0] + tokens_out * self.prices[1]) / 1e6
        try:
            return float(_litellm().completion_cost(completion_response=response))
        except Exception:  # litellm raises assorted errors for models missing from its price map
            return None


class ScriptedModel:
    """Replays recorded responses from a JSON file: {"label": "...", "responses": ["...", ...]}.
    Responses are returned in order, one per call, whatever the prompt; raises ScriptExhausted when none are left."""

    def __init__(self, path: Path):
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelConfigError(f"scripted model file not found: {path}") from exc
        except OSError as exc:
            raise ModelConfigError(f"cannot read scripted model file {path}: {exc}") from exc
        except ValueError as exc:
            raise ModelConfigError(f"scripted model file {path} is not valid JSON: {exc}") from exc
        responses = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise ModelConfigError(f'scripted model file {path} must hold {{"responses": ["...", ...]}}')
        self.name = f"scripted:{path.name}"
        self.label = str(data.get("label", ""))
        self._responses = list(responses)
        self._used = 0

    def complete(self, messages: list[dict]) -> Reply:
        if self._used == len(self._responses):
            raise ScriptExhausted(f"{self.name}: all {len(self._responses)} scripted responses have been used")
        text = self._responses[self._used]
        self._used += 1
        return Reply(text, offline_tokens(messages), len(text) // 4, cost_usd=0.0, model=self.name, seconds=0.0)

    def complete_many(self, messages: list[dict], n: int) -> list[Reply]:
        first = self.complete(messages)  # raises when none are left
        return [first] + [self.complete(messages) for _ in range(min(n - 1, len(self._responses) - self._used))]


class OracleModel:
    """A perfect model: replays a known patch (a task's expert patch) as its one reply, then has no more. Running the
    loop with it checks everything but the model against a real repository: localization, prompts, edit parsing,
    test selection, verdicts and evaluation."""

    def __init__(self, path: Path):
        try:
            self.patch = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelConfigError(f"cannot read the oracle's patch file {path}: {exc}") from None
        self.name, self._used = f"oracle:{Path(path).name}", False

    def complete(self, messages: list[dict]) -> Reply:
        if self._used:
            raise ScriptExhausted(f"{self.name}: the oracle has replayed its patch")
        self._used = True
        text = f"The expert's patch.\n\n```diff\n{self.patch.rstrip()}\n```\n"
        return Reply(text, 0, 0, cost_usd=0.0, model=self.name, seconds=0.0)

    def complete_many(self, messages: list[dict], n: int) -> list[Reply]:
        return [self.complete(messages)]  # there is one expert patch


def make_model(
    spec: str,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    num_retries: int = 3,
    prices: tuple[float, float] | None = None,
) -> Model:
    """"scripted:PATH" replays a script file, "oracle:PATCH" a known patch; anything else is a litellm model name such
    as "openai/gpt-4o-mini"."""
    if spec.startswith("scripted:"):
        return ScriptedModel(Path(spec.removeprefix("scripted:")))
    if spec.startswith("oracle:"):
        return OracleModel(Path(spec.removeprefix("oracle:")))
    return LiteLLMModel(spec, api_base=api_base, api_key=api_key, timeout=timeout, num_retries=num_retries,
                        prices=prices)


@dataclass
class Budget:
    max_usd: float | None = None
    max_calls: int | None = None
    max_tokens: int | None = None  # prompt and completion tokens together
    spent_usd: float = 0.0
    calls: int = 0
    tokens: int = 0
    cost_unknown: bool = False  # some reply had no known price, so spent_usd is a lower bound

    def check(self) -> None:
        """Raise BudgetExceeded if another call is not allowed."""
        if self.max_calls is not None and self.calls >= self.max_calls:
            raise BudgetExceeded(f"call budget used up: {self.calls} of {self.max_calls} calls made")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExceeded(f"token budget used up: {self.tokens} of {self.max_tokens} tokens used")
        if self.max_usd is not None and self.spent_usd >= self.max_usd:
            raise BudgetExceeded(f"cost budget used up: ${self.spent_usd:.4f} spent of ${self.max_usd:.4f}")

    def charge(self, reply: Reply) -> None:
        self.calls += 1
        self.tokens += reply.prompt_tokens + reply.completion_tokens
        if reply.cost_usd is None:
            self.cost_unknown = True
        else:
            self.spent_usd += reply.cost_usd


@dataclass
class SharedBudget(Budget):
    """A task's budget that also draws on a limit shared by processes (a batch's workers), kept in a JSON ledger
    under a file lock. The ledger outlives the batch, so a resumed batch goes on with what is left."""
    ledger: Path | None = None
    total_usd: float | None = None
    total_calls: int | None = None

    def _read(self) -> dict:
        try:
            return json.loads(self.ledger.read_text())
        except (OSError, ValueError):
            return {"calls": 0, "usd": 0.0}

    def check(self) -> None:
        super().check()
        with file_lock(self.ledger.with_name(self.ledger.name + ".lock")):
            spent = self._read()
        if self.total_calls is not None and spent["calls"] >= self.total_calls:
            raise BudgetExceeded(f"batch call budget used up: {spent['calls']} of {self.total_calls} calls made")
        if self.total_usd is not None and spent["usd"] >= self.total_usd:
            raise BudgetExceeded(f"batch cost budget used up: ${spent['usd']:.4f} spent of ${self.total_usd:.4f}")

    def charge(self, reply: Reply) -> None:
        super().charge(reply)
        with file_lock(self.ledger.with_name(self.ledger.name + ".lock")):
            spent = self._read()
            spent["calls"] += 1
            spent["usd"] += reply.cost_usd or 0.0
            spent["cost_unknown"] = spent.get("cost_unknown", False) or reply.cost_usd is None
            write_json(self.ledger, spent)


class Trajectory:
    """Every model exchange, written to a JSON file (a list of records) atomically after each record, so a crash
    loses nothing already recorded. An existing file is loaded and appended to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._records: list[dict] = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else []

    def record(self, **fields) -> None:
        """Append a record; values JSON cannot hold (paths...) are stored as strings."""
        record = {"timestamp": datetime.now(timezone.utc).isoformat(), **fields}
        self._records.append(json.loads(json.dumps(record, default=str)))  # also a deep copy
        self._write()

    @property
    def records(self) -> list[dict]:
        return list(self._records)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._records, f, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Session:
    """A model plus its budget and trajectory: the one way the agent talks to a model."""

    def __init__(self, model: Model, budget: Budget, trajectory: Trajectory):
        self.model = model
        self.budget = budget
        self.trajectory = trajectory

    def ask(self, messages: list[dict], *, purpose: str, meta: dict | None = None) -> Reply:
        return self.ask_many(messages, 1, purpose=purpose, meta=meta)[0]

    def ask_many(self, messages: list[dict], n: int, *, purpose: str, meta: dict | None = None) -> list[Reply]:
        """n replies to the same messages (several candidates per round); each counts as a call against the budget."""
        self.budget.check()
        base = {"purpose": purpose, "model": self.model.name, "messages": messages, "meta": meta or {}}
        try:
            replies = [self.model.complete(messages)] if n == 1 else self.model.complete_many(messages, n)
        except Exception as exc:
            self.trajectory.record(**base, error=f"{type(exc).__name__}: {exc}")
            raise
        for reply in replies:
            self.budget.charge(reply)
            self.trajectory.record(**base, reply=reply.text, prompt_tokens=reply.prompt_tokens,
                                   completion_tokens=reply.completion_tokens, cost_usd=reply.cost_usd,
                                   seconds=reply.seconds)
        return replies
