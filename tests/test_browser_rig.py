"""The browser rig itself: Chromium renders a page an aiohttp server of the test serves, and
the script on it runs (so a page test that fails is about the page, not the rig)."""

from __future__ import annotations

from aiohttp import web

PAGE = """<!doctype html><meta charset="utf-8"><title>rig</title>
<p id="out">not run</p><script>document.getElementById('out').textContent = 6 * 7;</script>"""


async def test_chromium_renders_a_served_page_and_runs_its_script(aiohttp_server,
                                                                  browser_page):
    app = web.Application()
    app.router.add_get("/", lambda _: web.Response(text=PAGE, content_type="text/html"))
    server = await aiohttp_server(app)
    await browser_page.goto(str(server.make_url("/")))
    assert await browser_page.text_content("#out") == "42"
