"""A chat-completions request body -> `ChatRequest`, or a 400 naming the parameter at fault.

Types are strict (a bool is not a number, `"yes"` is not a bool). Every OpenAI parameter is either
honoured or refused: an unsupported one is accepted only with the value that asks for nothing
(``"logprobs": false``, ``"tools": []``...), so no request is silently answered differently from
what it asked. Unknown parameters are refused too, as OpenAI's own API does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from skyeye.chat.session import GenerationSettings
from skyeye.errors import ServeRequestError

#: Deepest nesting of arrays/objects a body may have (a chat request needs about 6).
MAX_DEPTH = 32
#: Temperatures below this decode greedily: dividing logits by a tiny (or denormal) number
#: overflows them to inf, and sampling from the result fails.
GREEDY_BELOW = 1e-5
MAX_STOPS = 4
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes

#: Parameters honoured here (see docs/serve.md).
SUPPORTED = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
)
#: OpenAI parameters not implemented: name -> (values that ask for nothing, why refused).
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": (([],), "tool calling is not supported"),
    "tool_choice": (("none",), "tool calling is not supported"),
    "parallel_tool_calls": ((True, False), ""),
    "functions": (([],), "function calling is not supported"),
    "function_call": (("none",), "function calling is not supported"),
    "response_format": (({"type": "text"},), "only plain-text answers are generated"),
    "logprobs": ((False,), "log probabilities are not reported"),
    "top_logprobs": ((0,), "log probabilities are not reported"),
    "logit_bias": (({},), "logit bias is not supported"),
    "presence_penalty": ((0, 0.0), "presence penalty is not supported"),
    "frequency_penalty": ((0, 0.0), "frequency penalty is not supported"),
    "modalities": ((["text"],), "only text answers are generated"),
    "audio": ((), "audio answers are not supported"),
    "prediction": ((), "predicted outputs are not supported"),
    "reasoning_effort": ((), "this model does not reason in steps"),
    "web_search_options": ((), "web search is not supported"),
    "store": ((False,), "completions are not stored"),
    "metadata": (({},), "completions are not stored"),
    "service_tier": (("auto", "default"), "there is one service tier"),
}


@dataclass
class ChatRequest:
    """A validated request: the messages (checked further by `conversation.build_session`), whether
    to stream, and the decoding settings it asks for."""

    messages: list[Any]
    stream: bool
    settings: GenerationSettings
    include_usage: bool = False


def parse_body(body: bytes | bytearray) -> dict[str, Any]:
    """The JSON object of a request body; 400 when it is not one (bad JSON, NaN/Infinity, too deep)."""
    try:
        payload = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, a number with too many digits
        raise ServeRequestError(f"the request body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise ServeRequestError("the request body must be a JSON object")
    _check_depth(payload)
    return payload


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number")


def _too_deep() -> ServeRequestError:
    return ServeRequestError(
        f"the request body is nested too deeply (more than {MAX_DEPTH} levels of arrays/objects)"
    )


def _check_depth(payload: Any) -> None:
    # Iterative: later code (reprs in error messages) must never meet a structure deep enough
    # to exhaust the stack.
    todo = [(payload, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise _too_deep()
        children = value.values() if isinstance(value, dict) else value
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def chat_request(
    body: dict[str, Any], base: GenerationSettings, cap: int, model_id: str
) -> ChatRequest:
    """Check every parameter of ``body`` (``cap``: the server's --max-tokens; ``model_id``: the
    served model, 404 for another)."""
    for name in body:
        if name not in SUPPORTED and name not in UNSUPPORTED:
            raise ServeRequestError(
                f"unknown parameter {short_repr(name)}; this server accepts {list(SUPPORTED)}",
                param=name,
            )
        if name in UNSUPPORTED:
            _refuse_unless_neutral(body, name)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ServeRequestError(f"'model' must be a string: {model_id!r}", param="model")
    if model not in (None, model_id):
        raise ServeRequestError(
            f"model {short_repr(model)} is not served here; use {model_id!r}",
            status=404,
            kind="not_found_error",
            code="model_not_found",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ServeRequestError("'messages' must be a list of messages", param="messages")
    _integer(body, "n", 1, 1, "one answer per request")
    include_usage = bool(_boolean(body, "stream_options", "include_usage"))
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise ServeRequestError("'user' must be a string", param="user")
    changes: dict[str, Any] = {"stop": _stop(body), "seed": _integer(body, "seed", *SEED_RANGE)}
    max_tokens = _integer(body, "max_completion_tokens", 1, cap)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, cap)
    changes["max_new_tokens"] = max_tokens or min(base.max_new_tokens, cap)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    # Greedy unless the client asks for sampling with a temperature that is not ~0.
    if temperature is not None and temperature >= GREEDY_BELOW:
        changes.update(do_sample=True, temperature=temperature)
        if top_p is not None:
            changes["top_p"] = top_p
    else:
        changes["do_sample"] = False
    stream = _boolean(body, "stream")
    return ChatRequest(messages, bool(stream), dataclasses.replace(base, **changes), include_usage)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (error messages echo client values)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refuse_unless_neutral(body: dict[str, Any], name: str) -> None:
    neutral, why = UNSUPPORTED[name]
    value = body[name]
    if value is None or any(type(value) is type(n) and value == n for n in neutral):
        return
    accepted = " or ".join(json.dumps(n) for n in neutral)
    raise ServeRequestError(
        f"'{name}' is not supported by this server ({why}); leave it out"
        + (f" or send {accepted}" if neutral else ""),
        param=name,
    )


def _boolean(body: dict[str, Any], name: str, field: str | None = None) -> bool | None:
    """``body[name]`` (or ``body[name][field]``) as a bool; None when absent or null."""
    value = body.get(name)
    label = name
    if field is not None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ServeRequestError(f"'{name}' must be an object", param=name)
        value, label = value.get(field), f"{name}.{field}"
    if value is None or isinstance(value, bool):
        return value
    raise ServeRequestError(f"'{label}' must be true or false, got {short_repr(value)}", param=name)


def _integer(body: dict[str, Any], name: str, low: int, high: int, why: str = "") -> int | None:
    """``body[name]`` as an int in [low, high] (not a bool, not 2.0); None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        wanted = f"must be {low}" if low == high else f"must be an integer in [{low}, {high}]"
        raise ServeRequestError(
            f"'{name}' {wanted}{f' ({why})' if why else ''}, got {short_repr(value)}", param=name
        )
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    """``body[name]`` as a float in [low, high] (ints too, not bools); None when absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ServeRequestError(
            f"'{name}' must be a number in [{low:g}, {high:g}], got {short_repr(value)}", param=name
        )
    return float(value)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    """``stop``: a string or a list of up to `MAX_STOPS` non-empty strings."""
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOPS
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise ServeRequestError(
            f"'stop' must be a non-empty string or a list of up to {MAX_STOPS} of them, "
            f"got {short_repr(value)}",
            param="stop",
        )
    return tuple(stops)
