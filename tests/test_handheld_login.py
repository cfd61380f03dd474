"""The route page's access code: config checks, sessions, the throttle, and the login form.

Every read the page records is signed with the handheld's key, so off
loopback the page must ask for a code. The page runs as on a handheld
(uvicorn on a loopback port, a real route store and a real edge buffer) and
is spoken to over a real socket, cookies and all; one test logs in with a
real headless Chromium.
"""

import http.client
import logging
import re
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import pytest
import typer
from playwright.sync_api import expect, sync_playwright
from pydantic import ValidationError
from typer.testing import CliRunner

from edge_agent import cli, route_cli
from edge_agent.buffer import EdgeBuffer
from edge_agent.config import ConfigError, load_config
from edge_agent.handheld_access import (
    SESSION_COOKIE,
    AccessControl,
    LoginThrottle,
    Sessions,
    safe_next,
)
from edge_agent.handheld_config import (
    AccessCodeError,
    HandheldSection,
    load_access_code,
    normalize_code,
)
from edge_agent.handheld_probe import Probe
from edge_agent.handheld_web import HandheldServer
from edge_agent.keys import generate_key_file
from edge_agent.route_store import RouteStore
from protocols.canonical import decode_read
from protocols.channels import Protocol
from protocols.read import Source
from protocols.route_message import encode_route
from tests.conftest import HandClock
from tests.test_handheld_browser import CHROMIUM_ARGS
from tests.test_handheld_web import CARD, NOW, ROUTE, free_port, handheld_factory  # noqa: F401

CODE = "K7QM-4HXT-9RWP"
TYPED = "k7qm 4hxt9rwp"
"""The same code as a technician may type it: lower case, a space, a dash left out."""
WRONG = "ZZZZ-ZZZZ-ZZZZ"
ROUTE_PAGE = f"/routes/{ROUTE.route_id}"


def code_file(directory, mode=0o600, text=CODE):
    path = directory / "handheld.code"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def agent_config(tmp_path, handheld):
    generate_key_file(tmp_path / "collector.key")
    path = tmp_path / "edge-agent.toml"
    path.write_text(f'collector = "hh-0001"\n[handheld]\n{handheld}\n')
    return path


# --- the configuration ------------------------------------------------------------------------


def test_a_non_loopback_listen_host_without_an_access_code_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="access_code_file"):
        HandheldSection(listen_host="0.0.0.0")
    with pytest.raises(ConfigError) as refused:
        load_config(agent_config(tmp_path, 'listen_host = "192.168.1.20"'))
    assert "handheld" in str(refused.value)
    assert "access_code_file" in str(refused.value)


def test_edge_agent_route_refuses_a_non_loopback_page_without_a_code(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr(route_cli, "serve", lambda *args, **kwargs: served.append(kwargs))
    app = typer.Typer()
    app.command()(route_cli.route)
    runner = CliRunner()
    open_page = agent_config(tmp_path, 'listen_host = "0.0.0.0"')
    refused = runner.invoke(app, ["--config", str(open_page)])
    assert refused.exit_code == 2 and served == []
    code_file(tmp_path)
    open_page.write_text('collector = "hh-0001"\n[handheld]\nlisten_host = "0.0.0.0"\n'
                         'access_code_file = "handheld.code"\n')
    allowed = runner.invoke(app, ["--config", str(open_page)])
    assert allowed.exit_code == 0, allowed.output
    assert served == [{"routes": []}]
    assert runner.invoke(app, ["--config", str(open_page), "--allow-remote"]).exit_code == 2


def test_on_loopback_without_a_code_the_page_stays_open(tmp_path):
    section = load_config(agent_config(tmp_path, "listen_port = 8080")).handheld
    assert section.access_code_file is None
    assert route_cli.access_control(section) is None


def test_the_code_file_is_relative_to_the_config_file(tmp_path):
    code_file(tmp_path)
    config = load_config(agent_config(tmp_path, 'listen_host = "0.0.0.0"\n'
                                                'access_code_file = "handheld.code"'))
    assert config.handheld.access_code_file == tmp_path / "handheld.code"
    assert route_cli.access_control(config.handheld).matches(TYPED)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_code_file_others_can_read_is_refused_before_anything_starts(tmp_path, mode):
    path = code_file(tmp_path, mode)
    with pytest.raises(AccessCodeError, match=f"mode {mode:04o}") as refused:
        load_access_code(path)
    assert "chmod 600" in str(refused.value)
    assert CODE not in str(refused.value) and normalize_code(CODE) not in str(refused.value)
    cfg = load_config(agent_config(tmp_path, 'access_code_file = "handheld.code"'))
    with pytest.raises(AccessCodeError):
        route_cli.serve(cfg, cfg.handheld, routes=[], stop=threading.Event())
    assert not cfg.buffer.path.exists(), "the agent started before the code file was checked"


@pytest.mark.parametrize("text", ["", "SHORT-123", "ÄÖÜÄ-ÖÜÄÖ-ÜÄÖÜ", "X" * 200])
def test_a_code_file_that_holds_no_usable_code_is_refused(tmp_path, text):
    with pytest.raises(AccessCodeError):
        load_access_code(code_file(tmp_path, text=text))


def test_a_missing_code_file_is_refused(tmp_path):
    with pytest.raises(AccessCodeError, match="cannot read"):
        load_access_code(tmp_path / "nowhere.code")


def test_handheld_code_generate_writes_a_0600_file_and_prints_the_code_once(tmp_path):
    path = tmp_path / "etc" / "handheld.code"
    runner = CliRunner()
    made = runner.invoke(cli.app, ["handheld-code", "generate", "--out", str(path)])
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [code] = re.findall(r"access code: (\S+)", made.output)
    assert re.fullmatch(r"[2-9A-HJKMNP-TV-Z]{4}(-[2-9A-HJKMNP-TV-Z]{4}){2}", code)
    assert made.output.count(code) == 1
    assert load_access_code(path) == normalize_code(code)
    again = runner.invoke(cli.app, ["handheld-code", "generate", "--out", str(path)])
    assert again.exit_code == 2
    assert load_access_code(path) == normalize_code(code), "an existing code was replaced"
    forced = runner.invoke(cli.app, ["handheld-code", "generate", "--out", str(path), "--force"])
    assert forced.exit_code == 0
    assert load_access_code(path) != normalize_code(code)


# --- the rules (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "expected"), [
    ("/routes/R-1/stops/20?saved=10", "/routes/R-1/stops/20?saved=10"),
    ("/", "/"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example/", "/"),
    ("/\t/evil.example/", "/"),
    ("/\n/evil.example/", "/"),
    ("javascript:alert(1)", "/"),
    ("evil.example", "/"),
    ("/login", "/"),
    ("", "/"),
    (None, "/"),
])
def test_only_a_local_path_is_followed_after_logging_in(target, expected):
    assert safe_next(target) == expected


def test_wrong_codes_lock_a_client_out_for_longer_each_time():
    throttle = LoginThrottle()
    assert [throttle.lockout_s(n) for n in range(4, 10)] == [0, 30, 60, 120, 240, 480]
    assert throttle.lockout_s(15) == throttle.lockout_s(10_000) == 3600


def test_a_right_code_resets_the_throttle_and_clients_are_throttled_apart():
    clock = HandClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.failed("10.0.0.7")
    assert throttle.retry_after("10.0.0.7") == 30
    assert throttle.retry_after("10.0.0.8") == 0
    clock.advance(30)
    assert throttle.retry_after("10.0.0.7") == 0
    throttle.succeeded("10.0.0.7")
    assert throttle.failed("10.0.0.7") == 1


def test_a_session_ends_after_its_lifetime():
    clock = HandClock()
    sessions = Sessions(lifetime_s=12 * 3600, clock=clock)
    token = sessions.open()
    assert len(token) >= 43 and sessions.valid(token)
    assert not sessions.valid(token[:-1] + ("A" if token[-1] != "A" else "B"))
    clock.advance(12 * 3600 - 1)
    assert sessions.valid(token)
    clock.advance(1)
    assert not sessions.valid(token)


def test_the_access_code_is_not_in_its_repr():
    assert normalize_code(CODE) not in repr(AccessControl(CODE))


# --- over a real socket ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self):
        return self.headers.get("Location", "")


@dataclass
class Browser:
    """A client of the page: one cookie jar, one source address (one client to the throttle)."""

    port: int
    source: str = "127.0.0.1"
    cookies: dict = field(default_factory=dict)

    def request(self, method, path, form=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                source_address=(self.source, 0))
        sent = dict(headers or {})
        if form is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection.request(method, path, body=None if form is None else urlencode(form),
                           headers=sent)
        response = connection.getresponse()
        answer = Answer(response.status, response.headers, response.read().decode())
        connection.close()
        for cookie in answer.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if "max-age=0" in cookie.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer

    def get(self, path, **headers):
        return self.request("GET", path, headers=headers)

    def post(self, path, form=None, **headers):
        return self.request("POST", path, form or {}, headers)

    def log_in(self, code=TYPED, next_path="/"):
        return self.post("/login", {"code": code, "next": next_path})


@dataclass
class Guarded:
    server: HandheldServer
    store: RouteStore
    buffer: EdgeBuffer
    throttle_clock: HandClock
    session_clock: HandClock

    def browser(self, source="127.0.0.1"):
        return Browser(self.server.port, source)

    def reads(self):
        return [decode_read(sealed.data) for sealed in self.buffer.reads()]


@pytest.fixture
def guarded_factory(handheld_factory):  # noqa: F811 - the imported fixture, requested
    """The route page of ``handheld_factory`` behind the access code, its clocks in hand."""

    def start(allowed_hosts=("127.0.0.1", "localhost")):
        throttle_clock, session_clock = HandClock(), HandClock()
        access = AccessControl(CODE, throttle=LoginThrottle(clock=throttle_clock),
                               sessions=Sessions(clock=session_clock))
        page = handheld_factory(Probe(Protocol.IEC62056_21, None), access=access,
                                allowed_hosts=allowed_hosts)
        return Guarded(page.server, page.store, page.buffer, throttle_clock, session_clock)

    return start


@pytest.fixture
def guarded(guarded_factory):
    """The page behind the access code, as on a handheld listening beyond loopback."""
    return guarded_factory()


PAGES = ["/", ROUTE_PAGE, CARD.format(20), CARD.format(20) + "?saved=10", "/no/such/page"]
FORMS = [(CARD.format(20) + "/manual", {"value": "150"}),
         (CARD.format(20) + "/trouble", {"code": "dog", "note": ""}),
         (CARD.format(10) + "/probe", {})]


def test_without_a_session_every_page_redirects_to_the_login_form(guarded):
    browser = guarded.browser()
    for path in PAGES:
        answer = browser.get(path)
        assert answer.status == 303, path
        location = urlsplit(answer.location)
        assert location.path == "/login", path
        form = browser.get(answer.location)
        assert form.status == 200
        assert f'name="next" value="{path}"' in form.body.replace("&amp;", "&")


def test_without_a_session_every_post_is_refused_and_nothing_is_buffered(guarded):
    browser = guarded.browser()
    for cookies in ({}, {SESSION_COOKIE: "forged-or-expired"}):
        browser.cookies = dict(cookies)
        for path, form in FORMS:
            answer = browser.post(path, form)
            assert answer.status == 401, path
            assert 'action="/login"' in answer.body and "nothing was saved" in answer.body
    assert guarded.reads() == []
    assert guarded.store.visits(ROUTE.route_id) == {}
    assert guarded.store.progress(ROUTE.route_id).done == 0


def test_a_wrong_code_is_refused_then_the_client_is_throttled(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    browser = guarded.browser()
    for attempt in range(1, 6):
        answer = browser.log_in(WRONG)
        assert answer.status == 401, attempt
        assert "Wrong access code" in answer.body and SESSION_COOKIE not in browser.cookies
    assert "try again in 30 seconds" in answer.body
    locked = browser.log_in(TYPED)  # even the right code waits
    assert locked.status == 429 and locked.headers["Retry-After"] == "30"
    assert SESSION_COOKIE not in browser.cookies

    neighbour = guarded.browser("127.0.0.2")  # another client is not held up
    assert neighbour.log_in().status == 303 and SESSION_COOKIE in neighbour.cookies

    guarded.throttle_clock.advance(30)
    assert browser.log_in(WRONG).status == 401  # the sixth wrong code: twice as long
    assert browser.log_in(TYPED).headers["Retry-After"] == "60"
    guarded.throttle_clock.advance(60)
    assert browser.log_in(TYPED).status == 303

    wrong_lines = [r for r in caplog.records
                   if r.getMessage().startswith("route page: wrong access code")]
    assert len(wrong_lines) == 6 and "127.0.0.1" in wrong_lines[0].getMessage()
    assert any("too many wrong access codes" in r.getMessage() for r in caplog.records)
    for secret in (WRONG, TYPED, CODE, normalize_code(CODE), normalize_code(WRONG)):
        assert secret not in caplog.text
        assert secret not in answer.body and secret not in locked.body


def test_the_right_code_opens_a_session_that_records_a_signed_read(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    browser = guarded.browser()
    bounced = browser.get(ROUTE_PAGE)
    assert bounced.status == 303
    answer = browser.log_in(TYPED, next_path=ROUTE_PAGE)
    assert answer.status == 303 and answer.location == ROUTE_PAGE
    [cookie] = answer.headers.get_all("Set-Cookie")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "max-age=43200" in cookie.lower()
    token = browser.cookies[SESSION_COOKIE]
    assert len(token) >= 43

    route_page = browser.get(ROUTE_PAGE)
    assert route_page.status == 200 and f"Route {ROUTE.route_id}" in route_page.body
    assert route_page.headers["Cache-Control"] == "no-store"
    assert 'action="/logout"' in route_page.body
    saved = browser.post(CARD.format(20) + "/manual", {"value": "150"})
    assert saved.status == 303 and saved.location.endswith("?saved=20")

    [read] = guarded.reads()
    assert read.meter == "M-20" and read.source is Source.HANDHELD_MANUAL
    assert str(read.values["energy_import_kwh"].value) == "150"
    assert guarded.buffer.verify() == 1  # signed with the handheld's key, chained
    assert guarded.store.progress(ROUTE.route_id).done == 1
    assert token not in caplog.text and CODE not in caplog.text


def test_logout_ends_the_session_on_the_handheld_too(guarded):
    browser = guarded.browser()
    browser.log_in()
    token = browser.cookies[SESSION_COOKIE]
    assert browser.get("/").status == 200
    answer = browser.post("/logout")
    assert answer.status == 303 and answer.location == "/login"
    assert SESSION_COOKIE not in browser.cookies
    browser.cookies[SESSION_COOKIE] = token  # a copy of the cookie kept elsewhere
    assert browser.get("/").status == 303
    assert browser.post(CARD.format(20) + "/manual", {"value": "150"}).status == 401
    assert guarded.reads() == []
    assert guarded.browser().post("/logout").status == 303  # no session: nothing to end


def test_a_session_ends_after_a_shift(guarded):
    browser = guarded.browser()
    browser.log_in()
    guarded.session_clock.advance(12 * 3600)
    assert browser.get("/").status == 303


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "/\\evil.example/", "/\t/evil.example/",
])
def test_an_open_redirect_after_login_is_not_followed(guarded, target):
    browser = guarded.browser()
    form = browser.get("/login?" + urlencode({"next": target}))
    assert 'name="next" value="/"' in form.body and "evil.example" not in form.body
    answer = browser.log_in(next_path=target)
    assert answer.status == 303 and answer.location == "/"


def test_the_host_and_origin_checks_still_apply(guarded_factory):
    guarded = guarded_factory()
    browser = guarded.browser()
    evil = {"Origin": "http://evil.example"}
    assert browser.post("/login", {"code": TYPED}, **evil).status == 403  # no login by CSRF
    assert SESSION_COOKIE not in browser.cookies
    port = guarded.server.port
    assert browser.get("/", Host=f"evil.example:{port}").status == 403  # DNS rebinding
    browser.log_in()
    assert browser.post(CARD.format(20) + "/manual", {"value": "150"}, **evil).status == 403
    assert browser.get("/", Host=f"evil.example:{port}").status == 403
    own = {"Origin": f"http://127.0.0.1:{port}"}
    assert browser.post(CARD.format(20) + "/manual", {"value": "150"}, **own).status == 303
    assert len(guarded.reads()) == 1


def test_beyond_loopback_any_host_name_is_answered_but_only_with_a_session(guarded_factory):
    guarded = guarded_factory(allowed_hosts=None)
    browser = guarded.browser()
    host = {"Host": f"handheld.local:{guarded.server.port}"}
    assert browser.get("/", **host).status == 303
    browser.log_in()
    assert browser.get("/", **host).status == 200


def test_serve_with_an_access_code_asks_for_it(tmp_path):
    code_file(tmp_path)
    port = free_port()
    cfg = load_config(agent_config(tmp_path, f'listen_port = {port}\n'
                                             'access_code_file = "handheld.code"'))
    route_file = tmp_path / "route.json"
    route_file.write_bytes(encode_route(ROUTE))
    stop_serving = threading.Event()
    serving = threading.Thread(target=route_cli.serve, args=(cfg, cfg.handheld),
                               kwargs={"routes": [route_file], "stop": stop_serving})
    serving.start()
    try:
        browser = Browser(port)
        deadline = time.monotonic() + 15
        while True:
            try:
                assert browser.get("/").status == 303
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the route page never came up"
                time.sleep(0.05)
        assert browser.post(CARD.format(20) + "/manual", {"value": "150"}).status == 401
        assert browser.log_in().status == 303
        assert browser.post(CARD.format(20) + "/manual", {"value": "150"}).status == 303
    finally:
        stop_serving.set()
        serving.join(15)
    assert not serving.is_alive()
    with EdgeBuffer(cfg.buffer.path, collector="hh-0001") as buffer:
        assert buffer.verify() == 1


# --- in a browser ------------------------------------------------------------------------------


def test_a_technician_logs_in_with_the_code_and_sees_the_routes(guarded):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required for the browser test (apt install chromium)"
    url = guarded.server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.set_default_timeout(15_000)
            page.goto(url + ROUTE_PAGE)
            expect(page).to_have_url(re.compile(r"/login\?next="))
            page.locator("#code").fill(WRONG)
            page.locator("#login").click()
            expect(page.locator("#login-error")).to_contain_text("Wrong access code")
            expect(page.locator("#code")).to_have_value("")
            page.locator("#code").fill(TYPED)
            page.locator("#login").click()
            expect(page).to_have_url(url + ROUTE_PAGE)
            expect(page.locator("#progress")).to_contain_text("0 of 3 done")
            page.get_by_role("link", name="All routes").click()
            expect(page.get_by_role("link", name=re.compile(ROUTE.route_id))).to_be_visible()
            page.locator("#logout").click()
            expect(page).to_have_url(re.compile(r"/login$"))
            page.goto(url + "/")
            expect(page.locator("#code")).to_be_visible()
        finally:
            browser.close()
