"""A whole store on one machine, as real processes: a central, and tills with their devices.

The demo plays a day against it and the end-to-end tests drive it; both talk to it only the
way real users do: the head-office API, the POS API, the simulator's control interface.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from protocol import app_codes
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


async def call(session: aiohttp.ClientSession, method: str, url: str, *,
               json_body: Any = None, headers: dict[str, str] | None = None,
               ok: tuple[int, ...] = (200, 201), ssl_ctx: ssl.SSLContext | None = None) -> Any:
    async with session.request(method, url, json=json_body, headers=headers,
                               ssl=ssl_ctx if ssl_ctx else True) as resp:
        body = await resp.json(content_type=None)
        if resp.status not in ok:
            raise ApiError(resp.status, body)
        return body


@dataclass
class Till:
    name: str
    state: Path
    devices: Path
    pos_url: str = ""
    control_url: str = ""
    till_id: str = ""
    agent_args: list[str] = field(default_factory=list)
    cashier: str = "cashier-1"  # who the POS says is at the till

    @property
    def pos_headers(self) -> dict[str, str]:
        """What the POS software sends: the secret from its file, read afresh (it rotates)."""
        secret = (self.state / "pos-secret").read_text().strip()
        return {"Authorization": f"Bearer {secret}", "Cashier-Id": self.cashier}


class StoreHarness:
    def __init__(self, workdir: Path, store: str = "store-1",
                 movable_clock: bool = False, database: str | None = None) -> None:
        self.workdir = workdir
        # The central's database: a PostgreSQL URL, or None for its SQLite file.
        self.database = database
        self.store = store
        self.procs = Processes(workdir / "logs")
        # With a movable clock every process reads the offset file (agent.clock,
        # central.clock): `set_time` moves the whole store at once, nobody sleeps.
        self.clock_file = workdir / "clock-offset" if movable_clock else None
        self.env = {"TILLPOINT_CLOCK_OFFSET_FILE": str(self.clock_file)} \
            if self.clock_file else {}
        self.central_url = ""
        # Every central process running, by name; `balanced`: central_url is a balancer's.
        self.central_urls: dict[str, str] = {}
        self.balanced = False
        # Where tills reach the central, when not directly (a proxy in front of it).
        self.till_central_url: str | None = None
        self.admin_token = ""
        # `--tls-cert`/`--tls-key` here make the central serve HTTPS, trusted through `tls_ca`
        self.central_args: list[str] = []
        self.tls_ca: Path | None = None
        self.tills: list[Till] = []
        self.session: aiohttp.ClientSession | None = None
        self._shown_codes: set[tuple[str, int]] = set()  # app codes shown, taken once
        self._app_seeds: dict[str, bytes] = {}  # customer -> their app's key

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None, "call start_central() first"
        return self.session

    async def __aenter__(self) -> StoreHarness:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.procs.stop_all()
        if self.session:
            await self.session.close()

    # -- time -----------------------------------------------------------------------------

    def set_time(self, instant: datetime) -> None:
        """Every process of the store now reads `instant` (as time goes on from there)."""
        assert self.clock_file is not None, "start the harness with movable_clock=True"
        offset = (instant - datetime.now(UTC)).total_seconds()
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{offset:.6f}")
        tmp.replace(self.clock_file)

    # -- central --------------------------------------------------------------------------

    def kill_central(self, name: str = "central") -> None:
        """SIGKILL the central process `name` (the one start_central started by that name)."""
        proc = self.procs.find(name)
        assert proc is not None, f"{name} is not running"
        self.procs.kill(proc)
        self.procs.forget_exited()
        self.central_urls.pop(name, None)

    async def start_central(self, name: str = "central", *extra: str) -> str:
        """Start a central process and return its URL. Several may run on one PostgreSQL
        database, each under a `name` of its own, sharing the data directory (the first
        makes the secrets: start it alone); `extra` are more arguments (`--role ingest`).
        Head office and tills reach the last one started, unless put behind a balancer."""
        data = self.workdir / "central"
        port_file = self.workdir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        self.procs.reap(name)
        self.procs.start(name, tillpoint_cmd(
            "central", "run", "--data", str(data), "--port", "0", "--port-file", str(port_file),
            *(["--database", self.database] if self.database else []),
            *self.central_args, *extra), env=self.env or None)
        port = await wait_for(lambda: read_file(port_file), f"{name} to listen",
                              check=self.procs.check_alive)
        scheme = "https" if "--tls-cert" in self.central_args else "http"
        url = f"{scheme}://127.0.0.1:{port}"
        self.central_urls[name] = url
        if not self.balanced:
            self.central_url = url
        self.admin_token = (data / "admin-token").read_text().strip()
        return url

    def start_followers(self, name: str = "followers") -> None:
        """A process of the central's background jobs alone (`--role followers`), on the
        same database as the central processes. It serves nothing: what shows it works is
        its work (re-pricing done, budgets counted)."""
        self.procs.reap(name)
        self.procs.start(name, tillpoint_cmd(
            "central", "run", "--role", "followers", "--data", str(self.workdir / "central"),
            *(["--database", self.database] if self.database else [])),
            env=self.env or None)

    def put_behind(self, balancer_url: str) -> None:
        """From now on head office and tills reach the centrals through a balancer at
        `balancer_url` (start_central no longer moves central_url)."""
        self.central_url = balancer_url
        self.balanced = True

    @property
    def central_database(self) -> Path | str:
        """What central.db.connect takes to open the central's database."""
        return self.database or self.workdir / "central" / "central.db"

    async def office(self, method: str, path: str, body: Any = None,
                     ok: tuple[int, ...] = (200, 201)) -> Any:
        ctx = ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else None
        return await call(self.http, method, self.central_url + path, json_body=body,
                          headers={"Authorization": f"Bearer {self.admin_token}"}, ok=ok,
                          ssl_ctx=ctx)

    # -- tills ----------------------------------------------------------------------------

    async def add_till(self, name: str, sim_args: tuple[str, ...] = (),
                       agent_args: tuple[str, ...] = (), state: Path | None = None,
                       enroll_args: tuple[str, ...] = ()) -> Till:
        """`state`: the agent's state directory, if not `workdir/name` (a small disk, say)."""
        till = Till(name, state or self.workdir / name, self.workdir / name / "devices",
                    agent_args=list(agent_args))
        till.devices.mkdir(parents=True, exist_ok=True)
        control = till.devices / "control.json"
        control.unlink(missing_ok=True)
        self.procs.start(f"{name}-sim", tillpoint_cmd(
            "sim", "run", "--dir", str(till.devices), "--control-port", "0", *sim_args),
            env=self.env or None)
        info = await wait_for(lambda: read_file(control), f"{name}'s devices",
                              check=self.procs.check_alive)
        till.control_url = f"http://127.0.0.1:{json.loads(info)['port']}"
        token = (await self.office("POST", "/api/v1/enrolment-tokens",
                                   {"store": self.store}))["token"]
        enroll = self.procs.start(f"{name}-enroll", tillpoint_cmd(
            "agent", "enroll", "--state", str(till.state), "--central",
            self.till_central_url or self.central_url,
            f"--token={token}", "--name", name,
            *(("--ca", str(self.tls_ca)) if self.tls_ca else ()), *enroll_args),
            env=self.env or None)
        await wait_for(lambda: enroll.poll(), f"{name} to enrol", timeout=60)
        if enroll.returncode != 0:
            raise RuntimeError(f"enrolment of {name} failed; see {self.procs.log_dir}")
        self.procs.forget_exited()
        till.till_id = json.loads((till.state / "till.json").read_text())["till_id"]
        self.tills.append(till)
        await self.start_agent(till)
        return till

    async def start_agent(self, till: Till, *extra: str,
                          env: dict[str, str] | None = None) -> None:
        port_file = till.state / "pos.port"
        port_file.unlink(missing_ok=True)
        self.procs.reap(f"{till.name}-agent")
        self.procs.start(f"{till.name}-agent", tillpoint_cmd(
            "agent", "run", "--state", str(till.state),
            "--printer", str(till.devices / "printer"), "--reader", str(till.devices / "reader"),
            "--pos-port", "0", "--port-file", str(port_file),
            "--sync-interval", "0.5", "--pull-interval", "1", *till.agent_args, *extra),
            env={**self.env, **(env or {})} or None)
        port = await wait_for(lambda: read_file(port_file), f"{till.name}'s agent",
                              timeout=60, check=self.procs.check_alive)
        till.pos_url = f"http://127.0.0.1:{port}"

        async def devices_up() -> bool | None:
            status = await self.pos(till, "GET", "/pos/v1/status")
            return True if status["printer"]["connected"] and status["reader"]["connected"] \
                else None

        # A card swiped before the reader's port is open is lost, as in a store.
        await wait_for(devices_up, f"{till.name}'s devices to connect", 30,
                       self.procs.check_alive)

    def agent_process(self, till: Till) -> subprocess.Popen:
        proc = self.procs.find(f"{till.name}-agent")
        assert proc is not None, f"{till.name}'s agent is not running"
        return proc

    async def pos(self, till: Till, method: str, path: str, body: Any = None,
                  ok: tuple[int, ...] = (200, 201)) -> Any:
        # The POS API takes JSON only: a POST without a body sends an empty object.
        if body is None and method != "GET":
            body = {}
        return await call(self.http, method, till.pos_url + path, json_body=body,
                          headers=till.pos_headers, ok=ok)

    # -- the customer's presence ------------------------------------------------------------

    def now(self) -> datetime:
        """The store's time: the system clock, moved by the offset file if there is one."""
        offset = 0.0
        if self.clock_file is not None and self.clock_file.exists():
            offset = float(self.clock_file.read_text() or 0)
        return datetime.now(UTC) + timedelta(seconds=offset)

    async def app_key(self, customer_id: str) -> bytes:
        """The key the customer's app is given by the central (an otpauth URI), once: the
        app keeps it, and shows codes offline too."""
        seed = self._app_seeds.get(customer_id)
        if seed is None:
            uri = (await self.office("POST", f"/api/v1/customers/{customer_id}/app-code"))[
                "otpauth_uri"]
            secret = parse_qs(urlsplit(uri).query)["secret"][0]
            seed = self._app_seeds[customer_id] = base64.b32decode(
                secret + "=" * (-len(secret) % 8))
        return seed

    async def app_code(self, customer_id: str) -> str:
        """What the customer's app shows now, one not shown before by this harness (a code
        is taken once)."""
        seed = await self.app_key(customer_id)

        async def fresh_step() -> int | None:
            now = self.now()
            step = app_codes.step_at(now)
            # The till takes the steps either side of its own too; the one before only while
            # the till cannot have moved on a step meanwhile.
            late = now.timestamp() % app_codes.STEP_S > app_codes.STEP_S - 5
            for s in (step, step + 1, *(() if late else (step - 1,))):
                if (customer_id, s) not in self._shown_codes:
                    return s
            return None

        step = await wait_for(fresh_step, "the customer's app to show a new code", 45)
        self._shown_codes.add((customer_id, step))
        return app_codes.hotp(seed, step)

    async def present(self, till: Till, customer_id: str) -> dict:
        """The customer shows their app's code at `till`: the next receipt may spend points."""
        return await self.pos(till, "POST", "/pos/v1/presence/code",
                              {"customer_id": customer_id,
                               "code": await self.app_code(customer_id)})

    async def control(self, till: Till, method: str, path: str, body: Any = None) -> Any:
        return await call(self.http, method, till.control_url + path, json_body=body)

    async def wait_synced(self, timeout: float = 120.0) -> None:
        """Until every till's journal is acknowledged by the central, and re-priced: a sale's
        points are credited with the rule set's dates only then (central.credits)."""
        for till in self.tills:
            async def synced(t: Till = till) -> bool | None:
                status = await self.pos(t, "GET", "/pos/v1/status")
                return True if status["journal"]["unsent"] == 0 else None

            await wait_for(synced, f"{till.name} to sync", timeout, self.procs.check_alive)

        async def repriced() -> bool | None:
            return True if (await self.office("GET", "/api/v1/repricing"))["behind"] == 0 \
                else None

        await wait_for(repriced, "the central to re-price", timeout, self.procs.check_alive)
