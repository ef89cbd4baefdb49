"""Control HTTP interface (127.0.0.1, JSON) for tests and the demo: cards, faults, paper."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hardware_sim.card_reader import ReadError
from hardware_sim.shtrih_codes import Cmd, Err
from hardware_sim.simulator import Simulator

SIM = web.AppKey("simulator", Simulator)
PRESENT_KINDS = ("barcode", "track2", "tag", "raw_hex")
FAULT_KEYS = (
    "paper_out",
    "paper_out_after_lines",
    "replace_paper",
    "drop_next_reply",
    "corrupt_next_reply",
    "slow_printing_ms",
    "refuse_next",
    "unplug",
    "replug",
    "device",
    "shift_over_24h",
    "fiscal_memory_full",
    "clear",
)

routes = web.RouteTableDef()


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as error:
        return _error(str(error), error.status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _true(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if value is not True:
        raise BadRequest(f"{key} must be true")
    return True


def _count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{key} must be a non-negative integer")
    return value


def _refusal(value: Any) -> tuple[int, Err] | None:
    """`{"command": "85", "error": "45"}` (hex, as the spec writes them): refuse it once."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"command", "error"}:
        raise BadRequest('refuse_next must be {"command": "85", "error": "45"} (hex)')
    try:
        command = Cmd(int(str(value["command"]), 16))
    except ValueError:
        raise BadRequest(f"refuse_next: unknown command {value['command']!r}") from None
    try:
        error = Err(int(str(value["error"]), 16))
    except ValueError:
        raise BadRequest(f"refuse_next: unknown error code {value['error']!r}") from None
    if error == Err.OK:
        raise BadRequest("refuse_next: error must not be 00")
    return command, error


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    return web.json_response({"printer": sim.printer_state(), "reader": sim.reader_state()})


@routes.post("/reader/present")
async def present(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    body = await _body(request)
    given = [k for k in PRESENT_KINDS if k in body]
    unknown = sorted(set(body) - set(PRESENT_KINDS))
    if len(given) != 1 or unknown:
        raise BadRequest(f"give exactly one of {', '.join(PRESENT_KINDS)}")
    kind = given[0]
    value = body[kind]
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{kind} must be a non-empty string")
    try:
        frames = sim.reader.frames_for(kind, value)
    except ReadError as error:
        raise BadRequest(str(error)) from None
    if not sim.reader_port.plugged:
        raise BadRequest("the reader is unplugged", status=409)
    sent = await sim.reader.present(frames)
    return web.json_response({"sent_hex": sent.hex(), "frames": len(frames)})


@routes.get("/reader/state")
async def reader_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].reader_state())


@routes.get("/printer/state")
async def printer_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM].printer_state())


@routes.get("/printer/documents")
async def documents(request: web.Request) -> web.Response:
    docs = request.app[SIM].memory.documents
    return web.json_response({"documents": [d.to_json() for d in docs]})


@routes.get("/printer/documents/{number}")
async def document(request: web.Request) -> web.Response:
    try:
        number = int(request.match_info["number"])
    except ValueError:
        raise BadRequest("document number must be an integer") from None
    doc = request.app[SIM].memory.document(number)
    if doc is None:
        raise BadRequest(f"no fiscal document {number}", status=404)
    return web.json_response(doc.to_json())


@routes.get("/printer/paper")
async def paper(request: web.Request) -> web.Response:
    files = request.app[SIM].paper.files()
    return web.json_response({"paper": [{"file": f.name, "text": f.text} for f in files]})


@routes.post("/faults")
async def faults(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    body = await _body(request)
    unknown = sorted(set(body) - set(FAULT_KEYS))
    if unknown or not body:
        raise BadRequest(f"unknown or missing fault; known: {', '.join(FAULT_KEYS)}")
    _apply_faults(sim, body)
    return web.json_response({"ok": True, "printer": sim.printer_state()})


def _apply_faults(sim: Simulator, body: dict[str, Any]) -> None:
    # Validate everything before changing anything, so a bad request changes nothing.
    device = body.get("device", "printer")
    if device not in ("printer", "reader"):
        raise BadRequest("device must be 'printer' or 'reader'")
    if "paper_out" in body and body["paper_out"] != "now":
        raise BadRequest('paper_out must be "now" (or use paper_out_after_lines)')
    after = _count(body, "paper_out_after_lines")
    slow = _count(body, "slow_printing_ms")
    for key in ("drop_next_reply", "corrupt_next_reply", "fiscal_memory_full"):
        if key in body and not isinstance(body[key], bool):
            raise BadRequest(f"{key} must be true or false")
    refusal = _refusal(body.get("refuse_next"))
    clear, unplug, replug = _true(body, "clear"), _true(body, "unplug"), _true(body, "replug")
    replace, over_24h = _true(body, "replace_paper"), _true(body, "shift_over_24h")
    if unplug and replug:
        raise BadRequest("unplug and replug together make no sense")
    if over_24h and not sim.memory.shift_open:
        raise BadRequest("no shift is open: open one (E0) before making it last 24 h", 409)

    if clear:
        sim.clear_faults()
    if "paper_out" in body:
        sim.paper_out_now()
    if after is not None:
        sim.paper_out_after_lines(after)
    if replace:
        sim.replace_paper()
    if "drop_next_reply" in body:
        sim.reply_faults.drop_next_reply = body["drop_next_reply"]
    if "corrupt_next_reply" in body:
        sim.reply_faults.corrupt_next_reply = body["corrupt_next_reply"]
    if slow is not None:
        sim.set_slow_printing(slow)
    if refusal is not None:
        sim.device.refuse_next[refusal[0]] = refusal[1]
    if over_24h:
        sim.shift_over_24h()
    if "fiscal_memory_full" in body:
        sim.set_fiscal_memory_full(body["fiscal_memory_full"])
    if unplug:
        sim.ports(device).close()
    if replug:
        sim.ports(device).open()


def create_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[errors_as_json])
    app[SIM] = sim
    app.add_routes(routes)
    return app
