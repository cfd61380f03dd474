"""The edge agent's /metrics: a real agent polling simulated meters, scraped over HTTP."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent import __version__
from edge_agent.agent import Agent
from edge_agent.config import ConfigError, load_config
from edge_agent.keys import generate_key_file
from edge_agent.metrics import MetricsError, MetricsSection, load_token
from simulators.fleet import FleetFile, start_fleet

TOKEN = "edge-metrics-token-0123456789"
FLEET = {"speed": 60, "meters": [
    {"serial": "OK1", "profile": "eastron-sdm120", "protocol": "modbus_tcp"},
    {"serial": "MUTE", "profile": "eastron-sdm120", "protocol": "modbus_tcp",
     "faults": ["no_answer"]},
]}


def write_config(root, metrics: str, meters: str = "") -> None:
    if not (root / "collector.key").exists():
        generate_key_file(root / "collector.key")
    (root / "edge-agent.toml").write_text(
        'collector = "gw-metrics"\n[buffer]\nmin_free_mb = 0\n'
        "[collection]\nretries = 0\nretry_backoff_s = 0.05\n"
        f"{meters}\n[metrics]\n{metrics}\n")


def token_file(root, mode: int = 0o600, text: str = TOKEN):
    path = root / "metrics.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def scrape(url: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/metrics", headers=headers, timeout=10)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_polls_failures_and_the_buffer_are_scraped_with_the_token_only(tmp_path):
    token_file(tmp_path)
    with start_fleet(FleetFile.model_validate(FLEET)) as fleet:
        write_config(tmp_path, 'listen_port = 0\ntoken_file = "metrics.token"',
                     fleet.agent_sections(interval_s=0.2))
        agent = Agent.start(load_config(tmp_path / "edge-agent.toml"))
        stop = threading.Event()
        running = threading.Thread(target=agent.run, args=(stop,), name="agent")
        running.start()
        try:
            url = agent.metrics_server.url
            deadline = time.monotonic() + 30
            while True:
                seen = samples(scrape(url, TOKEN).text)
                failed = seen.get(("meterhub_edge_poll_failures_total",
                                   (("error", "NoResponse"), ("meter", "MUTE"))), 0)
                ok = seen.get(("meterhub_edge_polls_total", (("meter", "OK1"),)), 0)
                if (failed >= 1 and ok >= 2 and seen.get(("meterhub_edge_buffer_depth", ()))) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            anonymous = scrape(url, None)
            forged = scrape(url, "edge-metrics-token-forged-000")
        finally:
            stop.set()
            running.join(30)
            agent.close()
    assert failed >= 1 and ok >= 2, seen
    assert seen[("meterhub_edge_polls_total", (("meter", "MUTE"),))] >= failed
    assert not any(name == "meterhub_edge_poll_failures_total" and ("meter", "OK1") in labels
                   for name, labels in seen)
    assert seen[("meterhub_edge_buffer_depth", ())] >= 2  # no [sync]: nothing is acked
    assert seen[("meterhub_edge_unacked_age_seconds", ())] >= 0
    assert seen[("meterhub_edge_info", (("collector", "gw-metrics"), ("version", __version__)))
                ] == 1
    assert anonymous.status_code == forged.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    with pytest.raises(httpx.TransportError):  # stopped with the agent
        scrape(url, TOKEN)


def test_an_agent_refuses_to_start_with_a_token_file_others_can_read(tmp_path):
    token_file(tmp_path, mode=0o644)
    write_config(tmp_path, 'listen_port = 0\ntoken_file = "metrics.token"')
    with pytest.raises(MetricsError, match="chmod 600"):
        Agent.start(load_config(tmp_path / "edge-agent.toml"))


def test_metrics_beyond_loopback_need_a_token_file(tmp_path):
    write_config(tmp_path, 'listen_host = "0.0.0.0"')
    with pytest.raises(ConfigError, match=r"metrics: .*token_file"):
        load_config(tmp_path / "edge-agent.toml")
    token_file(tmp_path)
    write_config(tmp_path, 'listen_host = "0.0.0.0"\ntoken_file = "metrics.token"')
    config = load_config(tmp_path / "edge-agent.toml")
    assert config.metrics.token_file == tmp_path.resolve() / "metrics.token"
    assert MetricsSection(listen_host="::1").token_file is None  # loopback may stay open


@pytest.mark.parametrize("text", ["short", "two words in-a-token-file", ""])
def test_a_token_must_look_like_a_secret(tmp_path, text):
    with pytest.raises(MetricsError, match="one line"):
        load_token(token_file(tmp_path, text=text))


def test_on_loopback_without_a_token_the_page_is_open(tmp_path):
    write_config(tmp_path, "listen_port = 0")
    agent = Agent.start(load_config(tmp_path / "edge-agent.toml"))
    try:
        answer = scrape(agent.metrics_server.url, None)
    finally:
        agent.close()
    assert agent.metrics_server.host == "127.0.0.1"
    assert answer.status_code == 200
    assert samples(answer.text)[("meterhub_edge_buffer_depth", ())] == 0
