"""The POS API answers only the POS software: its secret, the loopback's name, JSON bodies."""

from __future__ import annotations

import argparse
import grp
import os
import stat
import sys
from pathlib import Path

import pytest

from agent import cli as agent_cli
from agent.pos_auth import PosSecretError, host_is_loopback, read_pos_secret, write_pos_secret
from tests.pos_rig import Rig
from tillpoint.store_harness import StoreHarness

SOCKS = {"sku": "S1", "name": "Socks", "qty": 1000, "price": 45000}


async def test_without_the_secret_or_with_a_wrong_one_nothing_is_answered(rig: Rig):
    calls = [("GET", "/pos/v1/status"), ("POST", "/pos/v1/shift/close"),
             ("POST", "/pos/v1/receipts"), ("POST", "/pos/v1/identify")]
    for auth in ({}, {"Authorization": "Bearer " + "x" * 43},
                 {"Authorization": "Basic " + rig.secret}, {"Authorization": rig.secret}):
        for method, path in calls:
            resp = await rig.client.request(method, path, json={"lines": [SOCKS]}, headers=auth)
            assert resp.status == 401, (auth, path)
            assert "POS secret" in (await resp.json())["error"]
    assert rig.printer.shift_closed == 0 and rig.printer.documents == []
    resp = await rig.client.get("/pos/v1/status", headers=rig.auth)
    assert resp.status == 200


async def test_a_rotated_secret_takes_over_without_a_restart(rig: Rig):
    old = rig.auth
    assert (await rig.client.get("/pos/v1/status", headers=old)).status == 200
    args = argparse.Namespace(state=rig.dir, group=None)
    (rig.dir / "agent.toml").write_text(f'pos_secret = "{rig.secret_path}"\n')
    assert agent_cli._pos_secret_rotate(args) == 0
    assert rig.auth != old
    assert (await rig.client.get("/pos/v1/status", headers=old)).status == 401
    assert (await rig.client.get("/pos/v1/status", headers=rig.auth)).status == 200


async def test_bodies_must_be_json(rig: Rig):
    for headers, data in [({}, None), ({"Content-Type": "text/plain"}, b'{"lines": []}'),
                          ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=1"),
                          ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--")]:
        for path in ("/pos/v1/receipts", "/pos/v1/identify", "/pos/v1/shift/close"):
            resp = await rig.client.post(path, data=data, headers={**rig.auth, **headers})
            assert resp.status == 415, (headers, path)
            assert "JSON" in (await resp.json())["error"]
    assert rig.printer.shift_closed == 0
    resp = await rig.client.post("/pos/v1/receipts", json={"lines": [SOCKS]}, headers=rig.auth)
    assert resp.status == 201, await resp.text()
    resp = await rig.client.post("/pos/v1/shift/close", json={}, headers={
        **rig.auth, "Content-Type": "application/json; charset=utf-8"})
    assert resp.status == 200


async def test_a_host_that_is_not_the_loopback_is_refused(rig: Rig):
    port = rig.client.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
                 f"127.0.0.1:{port + 1}", "127.0.0.1", f"10.0.0.5:{port}", ""):
        resp = await rig.client.get("/pos/v1/status", headers={**rig.auth, "Host": host})
        assert resp.status == 421, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        resp = await rig.client.get("/pos/v1/status", headers={**rig.auth, "Host": host})
        assert resp.status == 200, host


def test_host_names_accepted():
    assert host_is_loopback("localhost:8700", 8700)
    assert not host_is_loopback("localhost:8700", 8701)
    assert not host_is_loopback("[::1]", 8700)
    assert not host_is_loopback("::1:8700", 8700)
    assert not host_is_loopback("LOCALHOST.attacker:8700", 8700)


def test_the_secret_file_is_for_its_owner_and_group_only(tmp_path: Path):
    path = tmp_path / "etc" / "pos-secret"
    group = grp.getgrgid(os.getgid()).gr_name
    old_umask = os.umask(0)  # a careless umask must not widen the file
    try:
        write_pos_secret(path, group)
    finally:
        os.umask(old_umask)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == os.getgid()
    assert len(read_pos_secret(path)) >= 40
    with pytest.raises(PosSecretError, match="no group"):
        write_pos_secret(path, "no-such-group-tillpoint")
    path.chmod(0o644)
    with pytest.raises(PosSecretError, match="readable by others"):
        read_pos_secret(path)
    with pytest.raises(PosSecretError, match="no POS secret"):
        read_pos_secret(tmp_path / "missing")


async def test_a_running_agent_refuses_a_caller_without_the_secret_and_rotates(
        store: StoreHarness):
    till = store.tills[0]
    url = till.pos_url + "/pos/v1/receipts"
    async with store.http.post(url, json={"lines": [SOCKS]}) as resp:
        assert resp.status == 401
    # A page in the till's browser whose name was rebound to 127.0.0.1: its own Host.
    async with store.http.post(url, json={"lines": [SOCKS]}, headers={
            **till.pos_headers, "Host": "shop.example"}) as resp:
        assert resp.status == 421
    async with store.http.post(url, data=b'{"lines": []}', headers={
            **till.pos_headers, "Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
    old = till.pos_headers
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillpoint", "agent", "pos-secret", "rotate", "--state",
        str(till.state), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"new POS secret" in out
    assert stat.S_IMODE((till.state / "pos-secret").stat().st_mode) == 0o640
    async with store.http.get(till.pos_url + "/pos/v1/status", headers=old) as resp:
        assert resp.status == 401
    status = await store.pos(till, "GET", "/pos/v1/status")  # reads the new file
    assert status["journal"]["last_seq"] == 0
    docs = (await store.control(till, "GET", "/printer/documents"))["documents"]
    assert docs == []
