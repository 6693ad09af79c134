"""The FastAPI application: `/v1/models` and `/v1/chat/completions` (plain and streamed).

Errors are OpenAI-shaped JSON (``{"error": {"message", "type", "param", "code"}}``): 4xx for bad
input with a message naming the problem; anything unexpected is logged here and answered with a
500 that carries no traceback.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from skyeye.chat.reply_geo import reply_extension
from skyeye.chat.session import ChatReply, ChatSession, GenerationSettings
from skyeye.errors import ServeRequestError
from skyeye.serve.config import ServeConfig
from skyeye.serve.conversation import build_session
from skyeye.serve.gate import Gate

logger = logging.getLogger(__name__)
_END = object()


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error_response(err: ServeRequestError) -> JSONResponse:
    return JSONResponse(error_body(str(err), err.kind, err.code, err.param), status_code=err.status)


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    too_big = ServeRequestError(
        f"the request body is larger than this server's limit of {limit} bytes "
        "(--max-request-mb); send smaller images",
        status=413,
        code="request_too_large",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ServeRequestError(f"the request body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise ServeRequestError("the request body must be a JSON object")
    return payload


def _settings(base: GenerationSettings, body: dict[str, Any], cap: int) -> GenerationSettings:
    def number(name: str, low: float, high: float) -> float | None:
        value = body.get(name)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise ServeRequestError(f"'{name}' must be a number in [{low}, {high}]", param=name)
        return value

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 1 <= max_tokens <= cap
    ):
        raise ServeRequestError(
            f"'max_tokens' must be an integer in [1, {cap}]", param="max_tokens"
        )
    if body.get("n", 1) != 1:
        raise ServeRequestError("only n=1 is supported", param="n")
    temperature = number("temperature", 0.0, 2.0)
    top_p = number("top_p", 0.0, 1.0)
    changes: dict[str, Any] = {"max_new_tokens": max_tokens or min(base.max_new_tokens, cap)}
    # Greedy unless the client asks for sampling with a positive temperature.
    if temperature:
        changes.update(do_sample=True, temperature=temperature)
        if top_p:
            changes["top_p"] = top_p
    else:
        changes["do_sample"] = False
    return dataclasses.replace(base, **changes)


def create_app(config: ServeConfig, chat: ChatSession | None = None) -> FastAPI:
    """The API over ``chat``'s model (loaded from ``config.model`` when not given).

    Each request builds its own session from its messages, so requests never share state.
    """
    if chat is None:
        from skyeye.chat.session import load_chat

        chat = load_chat(config.model, device=config.device)
    chat.model.eval()
    gate = Gate(config.concurrency, config.queue_size)
    created = int(time.time())
    app = FastAPI(title="SkyEye", version="1", docs_url=None, redoc_url=None)
    app.state.config, app.state.chat, app.state.gate = config, chat, gate

    @app.exception_handler(ServeRequestError)
    async def _serve_error(_: Request, err: ServeRequestError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(err.detail), kind), status_code=err.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected error while answering a request")
        return JSONResponse(
            error_body(
                f"internal error ({type(err).__name__}); see the server log", "server_error"
            ),
            status_code=500,
        )

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if config.api_key is not None and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), config.api_key.encode()):
                return _error_response(
                    ServeRequestError(
                        "incorrect or missing API key: send 'Authorization: Bearer <key>'",
                        status=401,
                        kind="authentication_error",
                        code="invalid_api_key",
                    )
                )
        return await call_next(request)

    def model_card() -> dict[str, Any]:
        return {"id": config.model_id, "object": "model", "created": created, "owned_by": "skyeye"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id != config.model_id:
            raise ServeRequestError(
                f"model {model_id!r} is not served here; this server has {config.model_id!r}",
                status=404,
                kind="not_found_error",
                code="model_not_found",
            )
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _read_json(request, config.max_request_bytes)
        if body.get("model") not in (None, config.model_id):
            raise ServeRequestError(
                f"model {body.get('model')!r} is not served here; use {config.model_id!r}",
                status=404,
                kind="not_found_error",
                code="model_not_found",
                param="model",
            )
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ServeRequestError("'messages' must be a list of messages", param="messages")
        settings = _settings(chat.settings, body, config.max_new_tokens)
        await gate.enter()
        try:
            session, question = await run_in_threadpool(
                _session_or_400, chat, messages, settings, config
            )
            if body.get("stream"):
                return await _stream(session, question, config.model_id, gate)
            reply = await run_in_threadpool(_ask, session, question)
        except BaseException:
            gate.leave()
            raise
        gate.leave()
        return _completion(reply, session, config.model_id)

    return app


def _session_or_400(
    chat: ChatSession, messages: list, settings: GenerationSettings, config: ServeConfig
) -> tuple[ChatSession, str]:
    try:
        return build_session(chat, messages, settings, allow_files=config.allow_files)
    except ServeRequestError:
        raise
    except ValueError as err:  # band/wavelength mismatch, bad raster, prompt too long
        raise ServeRequestError(str(err), param="messages") from None


def _ask(session: ChatSession, question: str) -> ChatReply:
    try:
        return session.ask(question)
    except ValueError as err:  # PromptTooLongError and friends
        code = "context_length_exceeded" if "context" in str(err) else None
        raise ServeRequestError(str(err), code=code, param="messages") from None


def _next(iterator) -> Any:
    try:
        return next(iterator)
    except StopIteration:
        return _END
    except ValueError as err:
        code = "context_length_exceeded" if "context" in str(err) else None
        raise ServeRequestError(str(err), code=code, param="messages") from None


def _finish_reason(reply: ChatReply, session: ChatSession) -> str:
    tokens = len(session.processor.tokenizer(reply.text, add_special_tokens=False)["input_ids"])
    return "length" if tokens >= session.settings.max_new_tokens else "stop"


def _completion(reply: ChatReply, session: ChatSession, model_id: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "skyeye": reply_extension(reply, session.images),
                },
                "finish_reason": _finish_reason(reply, session),
            }
        ],
        "usage": None,
    }


async def _stream(session: ChatSession, question: str, model_id: str, gate: Gate):
    """Start generating (errors before the first token are still plain 4xx answers), then SSE."""
    pieces = session.stream(question)
    first = await run_in_threadpool(_next, pieces)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload)}\n\n"

    async def events() -> AsyncIterator[str]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            piece = first
            while piece is not _END:
                if piece:
                    yield chunk({"content": piece})
                piece = await run_in_threadpool(_next, pieces)
            reply = session.last_reply
            assert reply is not None
            extension = await run_in_threadpool(reply_extension, reply, session.images)
            yield chunk({"skyeye": extension}, _finish_reason(reply, session))
            yield "data: [DONE]\n\n"
        except ServeRequestError as err:
            yield f"data: {json.dumps(error_body(str(err), err.kind, err.code, err.param))}\n\n"
        except Exception as err:
            logger.exception("unexpected error while streaming an answer")
            body = error_body(
                f"internal error ({type(err).__name__}); see the server log", "server_error"
            )
            yield f"data: {json.dumps(body)}\n\n"
        finally:
            await run_in_threadpool(pieces.close)
            gate.leave()

    return StreamingResponse(events(), media_type="text/event-stream")
