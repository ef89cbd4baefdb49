"""A real `tillpoint central run --messages-to-log`: the development sender writes the
customer's sign-in code to the central's log, and the code read from there signs in."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from tests.test_account import ANNA
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for


async def test_the_sign_in_code_goes_to_the_log_of_a_development_central(tmp_path: Path):
    procs = Processes(tmp_path / "logs")
    data, port_file = tmp_path / "central", tmp_path / "central.port"
    try:
        procs.start("central", tillpoint_cmd("central", "run", "--data", str(data), "--port",
                                             "0", "--port-file", str(port_file),
                                             "--messages-to-log"))
        port = await wait_for(lambda: read_file(port_file), "the central to listen",
                              check=procs.check_alive)
        base = f"http://127.0.0.1:{port}"
        admin = {"Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/v1/customers", headers=admin, json=ANNA) as r:
                assert r.status == 201, await r.text()
                cid = (await r.json())["id"]
            async with http.post(f"{base}/account/v1/sign-in/code",
                                 json={"phone": ANNA["phone"]}) as r:
                assert r.status == 202, await r.text()
                challenge = (await r.json())["challenge"]
            log = tmp_path / "logs" / "central.log"
            pattern = re.compile(r"development sms channel, to \+79990000001: .*?(\d{6}) is"
                                 r" your sign-in code")

            def code_in_log() -> str | None:
                found = pattern.search(log.read_text(errors="replace"))
                return found.group(1) if found else None

            code = await wait_for(code_in_log, "the code in the central's log")
            async with http.post(f"{base}/account/v1/sign-in", json={
                    "challenge": challenge, "code": code, "session": "bearer"}) as r:
                assert r.status == 200, await r.text()
                signed = await r.json()
                assert signed["customer_id"] == cid
                token = signed["token"]
            async with http.get(f"{base}/account/v1/balance",
                                headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
                assert (await r.json())["available"] == 100
            async with http.get(f"{base}/account") as r:  # the page, from the package
                assert r.status == 200 and "account.js" in await r.text()
    finally:
        procs.stop_all()
