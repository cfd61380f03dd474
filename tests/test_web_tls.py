"""HTTPS on the agent's own web ports: the handheld's route page and the metrics port."""

from __future__ import annotations

import ssl

import httpx
import pytest
from fastapi import FastAPI

from edge_agent.agent import Agent
from edge_agent.config import ConfigError, load_config
from edge_agent.handheld_access import AccessControl
from edge_agent.handheld_probe import Probe
from edge_agent.metrics import MetricsError
from protocols.channels import Protocol
from protocols.web_server import TlsError, TlsFiles, WebServer
from tests.test_edge_metrics import TOKEN, scrape, token_file, write_config
from tests.test_handheld_web import handheld_factory  # noqa: F401
from tests.test_sync import server_certificate


@pytest.fixture
def certificate(tmp_path):
    """(ca, cert, key) PEM files for 127.0.0.1, the key 0600 as it must be."""
    ca, cert, key = server_certificate(tmp_path)
    key.chmod(0o600)
    return ca, cert, key


def trusting(ca):
    return ssl.create_default_context(cafile=str(ca))


def hello() -> FastAPI:
    app = FastAPI()
    app.get("/")(lambda: {"hello": "tls"})
    return app


def test_a_web_server_with_a_certificate_serves_https_only(certificate):
    ca, cert, key = certificate
    with WebServer(hello(), "127.0.0.1", 0, tls=TlsFiles(cert, key)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert httpx.get(server.url, verify=trusting(ca), timeout=10).json() == {"hello": "tls"}
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the same port gets no page
            httpx.get(server.url.replace("https://", "http://"), timeout=10)


def test_a_key_others_can_read_or_a_wrong_pair_is_refused_before_binding(tmp_path,
                                                                         certificate):
    ca, cert, key = certificate
    key.chmod(0o644)
    with pytest.raises(TlsError, match="chmod 600"):
        WebServer(hello(), "127.0.0.1", 0, tls=TlsFiles(cert, key))
    key.chmod(0o600)
    with pytest.raises(TlsError, match="not a PEM certificate and its key"):
        WebServer(hello(), "127.0.0.1", 0, tls=TlsFiles(ca, key))  # the CA's cert, not its key
    with pytest.raises(TlsError, match="cannot read the TLS key"):
        WebServer(hello(), "127.0.0.1", 0, tls=TlsFiles(cert, tmp_path / "missing.key"))


def test_the_route_page_over_tls_marks_its_session_cookie_secure(handheld_factory,  # noqa: F811
                                                                  certificate, monkeypatch):
    ca, cert, key = certificate
    opened = {}
    real = WebServer.__init__

    def with_tls(self, app, host, port, **kwargs):  # the factory's server, given TLS
        real(self, app, host, port, **{**kwargs, "tls": TlsFiles(cert, key)})
        opened["url"] = self.url

    monkeypatch.setattr(WebServer, "__init__", with_tls)
    handheld_factory(Probe(Protocol.IEC62056_21, None), access=AccessControl("K7QM-4HXT-9RWP"))
    answer = httpx.post(f"{opened['url']}/login", data={"code": "k7qm 4hxt 9rwp"},
                        verify=trusting(ca), timeout=10)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "handheld_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie


def test_the_metrics_port_over_tls_with_its_token(tmp_path, certificate):
    ca, cert, key = certificate
    token_file(tmp_path)  # the files sit beside the config: relative names are resolved there
    write_config(tmp_path, 'listen_host = "127.0.0.1"\nlisten_port = 0\n'
                           'token_file = "metrics.token"\n'
                           f'tls_cert_file = "{cert.name}"\ntls_key_file = "{key.name}"')
    agent = Agent.start(load_config(tmp_path / "edge-agent.toml"))
    try:
        url = agent.metrics_server.url
        ok = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                       verify=trusting(ca), timeout=10)
    finally:
        agent.close()
    assert url.startswith("https://") and ok.status_code == 200
    assert "meterhub_edge_buffer_depth" in ok.text
    with pytest.raises(httpx.HTTPError):
        scrape(url.replace("https://", "http://"), TOKEN)


def test_tls_needs_both_files_and_a_usable_pair(tmp_path, certificate):
    _, cert, key = certificate
    token_file(tmp_path)
    write_config(tmp_path, f'listen_port = 0\ntls_cert_file = "{cert}"')
    with pytest.raises(ConfigError, match="both tls_cert_file and tls_key_file"):
        load_config(tmp_path / "edge-agent.toml")
    key.chmod(0o640)
    write_config(tmp_path, f'listen_port = 0\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"')
    with pytest.raises(MetricsError, match="chmod 600"):
        Agent.start(load_config(tmp_path / "edge-agent.toml"))
