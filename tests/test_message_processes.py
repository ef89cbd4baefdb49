"""A central process started as store IT starts it (`tillpoint central run --smtp ...`)
welcomes a customer head office creates, by e-mail through a real SMTP server."""

from __future__ import annotations

import contextlib
from pathlib import Path

import aiohttp
import pytest

from tests.databases import KINDS, postgres_schema
from tests.message_rigs import SmtpServer
from tillpoint.processes import Processes, read_file, tillpoint_cmd, wait_for


@pytest.mark.parametrize("kind", KINDS)
async def test_a_central_process_sends_the_welcome_email(tmp_path: Path, kind: str):
    smtp = SmtpServer()
    smtp_port = await smtp.start()
    procs = Processes(tmp_path / "logs")
    with postgres_schema() if kind == "postgresql" else contextlib.nullcontext() as url:
        try:
            data, port_file = tmp_path / "central", tmp_path / "central.port"
            procs.start("central", tillpoint_cmd(
                "central", "run", "--data", str(data), "--port", "0", "--port-file",
                str(port_file), "--smtp", f"127.0.0.1:{smtp_port}", "--mail-from",
                "club@shop.example", *(["--database", url] if url else [])))
            port = await wait_for(lambda: read_file(port_file), "the central to listen",
                                  check=procs.check_alive)
            base = f"http://127.0.0.1:{port}"
            admin = {"Authorization": f"Bearer {(data / 'admin-token').read_text().strip()}"}
            async with aiohttp.ClientSession() as http:
                # No quiet hours (equal ends): the test runs at any hour of the day.
                async with http.put(f"{base}/api/v1/message-settings", headers=admin,
                                    json={"quiet_from": "00:00", "quiet_to": "00:00"}) as resp:
                    assert resp.status == 200, await resp.text()
                async with http.post(f"{base}/api/v1/customers", headers=admin, json={
                        "card_number": "2990000000019", "name": "Ann"}) as resp:
                    assert resp.status == 201, await resp.text()
                    cid = (await resp.json())["id"]
                async with http.put(f"{base}/api/v1/message-contacts/{cid}", headers=admin,
                                    json={"email": "ann@example.org", "language": "en",
                                          "source": "form at store 1"}) as resp:
                    assert resp.status == 200, await resp.text()
            await wait_for(lambda: smtp.mails or None, "the welcome e-mail", timeout=60,
                           check=procs.check_alive)
            [mail] = smtp.mails
            assert mail["To"] == "ann@example.org" and mail["Subject"] == "Welcome"
            assert mail.get_content().strip() == "Ann, welcome to the programme!"
        finally:
            procs.stop_all()
            await smtp.stop()
