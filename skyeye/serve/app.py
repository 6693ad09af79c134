"""The FastAPI application: `/v1/models` and `/v1/chat/completions` (plain and streamed).

Errors are OpenAI-shaped JSON (``{"error": {"message", "type", "param", "code"}}``): 4xx for bad
input with a message naming the problem; anything unexpected is logged here and answered with a
500 that carries no traceback. A client that goes away (mid-stream, or while its answer is being
generated) stops its generation at the next token and gives its slot back at once
(`skyeye.serve.answer`).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from skyeye.chat.readable import render_readable
from skyeye.chat.reply_geo import reply_extension
from skyeye.chat.session import ChatReply, ChatSession, GenerationSettings
from skyeye.errors import GenerationCancelled, ServeRequestError
from skyeye.serve.answer import END, Answer, Client, ClosingStream
from skyeye.serve.batcher import BatchedGenerator, Batcher
from skyeye.serve.config import ServeConfig
from skyeye.serve.conversation import build_session
from skyeye.serve.gate import Gate, Slot
from skyeye.serve.lifespan import run_with_app
from skyeye.serve.params import chat_request, parse_body
from skyeye.serve.processes import register_processes

logger = logging.getLogger(__name__)


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error_response(err: ServeRequestError) -> JSONResponse:
    return JSONResponse(error_body(str(err), err.kind, err.code, err.param), status_code=err.status)


class KeyCheck:
    """ASGI middleware: with a key set, every route (the API, `/openapi.json`, unknown paths)
    needs ``Authorization: Bearer <key>``; 401 otherwise. Plain ASGI rather than
    `BaseHTTPMiddleware`, which would stand between a streamed answer and its client's
    disconnect."""

    def __init__(self, app: ASGIApp, key: str | None) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        err = ServeRequestError(
            "incorrect or missing API key: send 'Authorization: Bearer <key>'",
            status=401,
            kind="authentication_error",
            code="invalid_api_key",
        )
        await _error_response(err)(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.key is not None
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        token = header[7:] if header[:7].lower() == b"bearer " else b""
        return hmac.compare_digest(token, self.key.encode())


async def _read_body(request: Request, limit: int) -> bytearray:
    """The body, in one buffer (the JSON parser reads it as it is: no copy as `bytes`)."""
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
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
    except ClientDisconnect:  # closed before (or right after) sending its body
        raise GenerationCancelled("the client disconnected while sending") from None
    return body


def create_app(
    config: ServeConfig,
    chat: ChatSession | None = None,
    job_model: Callable[[], ChatSession] | None = None,
) -> FastAPI:
    """The API over ``chat``'s model (loaded from ``config.model`` when not given).

    Each request builds its own session from its messages, so requests never share state; their
    answers are decoded together by one `Batcher` (``config.concurrency`` at once), which keeps
    recent image prefixes (``config.prefix_cache_mb``).
    ``job_model`` loads the jobs' own copy of the model (`skyeye.serve.processes`; default:
    ``config.model`` as `skyeye.scene` loads it), at the first job.
    """
    if chat is None:
        from skyeye.constants import torch_dtype
        from skyeye.scene.infer import open_session

        dtype = None if config.dtype == "auto" else torch_dtype(config.dtype)
        chat = open_session(config.model, device=config.device, dtype=dtype or "auto")
    chat.model.eval()
    gate = Gate(config.concurrency, config.queue_size)
    batcher = Batcher(chat.model, config.concurrency, int(config.prefix_cache_mb * 2**20))
    created = int(time.time())
    app = FastAPI(title="SkyEye", version="1", docs_url=None, redoc_url=None)
    app.state.config, app.state.chat, app.state.gate = config, chat, gate
    app.state.batcher = batcher
    run_with_app(app, stop=batcher.close)  # its answers still running fail
    app.add_middleware(KeyCheck, key=config.api_key)
    register_processes(app, config, job_model or partial(_load_job_model, config), _read_body)

    @app.exception_handler(ServeRequestError)
    async def _serve_error(_: Request, err: ServeRequestError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(GenerationCancelled)
    async def _client_gone(_: Request, err: GenerationCancelled) -> Response:
        logger.info("the client went away (%s): its answer was stopped and its slot freed", err)
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

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
    async def chat_completions(request: Request) -> Response:
        # Parsed off the event loop: tens of megabytes of JSON take a while.
        body = await run_in_threadpool(
            parse_body, await _read_body(request, config.max_request_bytes)
        )
        params = chat_request(body, chat.settings, config.max_new_tokens, config.model_id)
        client = Client(request)
        slot: Slot | None = None
        answer: Answer | None = None
        streaming = False
        try:  # a disconnect raises GenerationCancelled here (-> _client_gone)
            slot = await client.unless_gone(gate.enter())
            session, question = await client.unless_gone(
                run_in_threadpool(
                    _session_or_400, chat, params.messages, params.settings, config, batcher
                )
            )
            answer = Answer(session, question)
            # Errors found before the first token (prompt too long) are still plain 4xx answers.
            first = await client.unless_gone(answer.next())
            if params.stream:
                streaming = True
                events = _events(
                    answer, first, session, client, config.model_id, params.include_usage
                )
                return ClosingStream(events, on_close=_closer(answer, slot, client))
            while first is not END:
                first = await client.unless_gone(answer.next())
            reply = session.last_reply
            assert reply is not None
            slot.release()  # the model is free: the GeoJSON is built outside the slot
            completion = await run_in_threadpool(_completion, reply, session, config.model_id)
            return JSONResponse(completion)
        finally:
            if not streaming:  # a stream cleans up when it closes (ClosingStream)
                _closer(answer, slot, client)()

    return app


def _load_job_model(config: ServeConfig) -> ChatSession:
    from skyeye.scene.infer import open_session

    return open_session(config.model, device=config.device)


def _closer(answer: Answer | None, slot: Slot | None, client: Client) -> Any:
    """What ends a request: stop its generation (no-op once finished), free its slot."""

    def close() -> None:
        if answer is not None:
            answer.cancel.set()
        if slot is not None:
            slot.release()
        client.close()

    return close


def _session_or_400(
    chat: ChatSession,
    messages: list,
    settings: GenerationSettings,
    config: ServeConfig,
    batcher: Batcher,
) -> tuple[ChatSession, str]:
    try:
        session, question, digests = build_session(
            chat, messages, settings, allow_files=config.allow_files, max_pixels=config.max_pixels
        )
    except ServeRequestError:
        raise
    except ValueError as err:  # band/wavelength mismatch, bad raster, prompt too long
        raise ServeRequestError(str(err), param="messages") from None
    session.generator = BatchedGenerator(batcher, config.model_id, digests)
    return session, question


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
                    "content": render_readable(reply.text),  # the grammar: skyeye.raw
                    "skyeye": reply_extension(reply, session.images),
                },
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": usage(reply),
    }


def usage(reply: ChatReply) -> dict[str, int]:
    """OpenAI's token counts of one answer (the prompt's image tokens included)."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


async def _events(
    answer: Answer,
    first: str | object,
    session: ChatSession,
    client: Client,
    model_id: str,
    include_usage: bool = False,
) -> AsyncIterator[str]:
    """The SSE chunks of a streamed answer (with ``include_usage``, a last chunk with no choices
    and the token counts, as OpenAI's); stops quietly when the client goes away."""
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

    try:
        yield chunk({"role": "assistant", "content": ""})
        piece = first
        while piece is not END:
            if piece:
                yield chunk({"content": piece})
            piece = await client.unless_gone(answer.next())
        reply = session.last_reply
        assert reply is not None
        extension = await run_in_threadpool(reply_extension, reply, session.images)
        yield chunk({"skyeye": extension}, reply.finish_reason)
        if include_usage:
            last = {"id": ident, "object": "chat.completion.chunk", "created": created}
            last |= {"model": model_id, "choices": [], "usage": usage(reply)}
            yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"
    except GenerationCancelled:
        logger.info("the client went away mid-stream: its answer was stopped")
    except ServeRequestError as err:
        yield f"data: {json.dumps(error_body(str(err), err.kind, err.code, err.param))}\n\n"
    except Exception as err:
        logger.exception("unexpected error while streaming an answer")
        body = error_body(
            f"internal error ({type(err).__name__}); see the server log", "server_error"
        )
        yield f"data: {json.dumps(body)}\n\n"
