"""The Alertmanager API and ``/metrics`` behind basic auth, used by the real ``amtool`` (a
password in the URL) and the real Prometheus (``basic_auth`` in a scrape config and in
its ``alertmanagers``)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pudimd.auth.passwords import hash_password
from tests.helpers import free_port, require_binary, run_server
from tests.integration.daemon_harness import DaemonProcess, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PASSWORD = "am-pass-1"
CONFIG = """targets: []
alerting:
  route: {{receiver: none, group_wait: 0s}}
  receivers: [{{name: none}}]
auth:
  alertmanager_api:
    basic_auth_users: {{amtool: '{hash}', prometheus: '{hash}'}}
  metrics:
    basic_auth_users: {{prometheus: '{hash}'}}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    path = tmp_path_factory.mktemp("auth-am") / "pudimd.yaml"
    path.write_text(CONFIG.format(hash=hash_password(PASSWORD)))
    yield from running_daemon(path, path.parent / "state")


async def amtool(url: str, *args: str) -> tuple[int, str, str]:
    """amtool's exit code, standard output and error output."""
    done = await anyio.run_process(
        [require_binary("amtool"), f"--alertmanager.url={url}", *args], check=False
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_amtool_with_a_password_in_the_url(daemon: DaemonProcess) -> None:
    good = f"http://amtool:{PASSWORD}@127.0.0.1:{daemon.port}"
    code, out, err = await amtool(good, "alert", "add", "alertname=AuthTest", "severity=page")
    assert code == 0, err
    code, out, err = await amtool(good, "alert", "query", "-o", "json")
    assert code == 0, err
    assert [a["labels"]["alertname"] for a in json.loads(out)] == ["AuthTest"]
    code, out, err = await amtool(daemon.url, "alert", "query")
    assert code != 0 and "401" in err, err
    wrong = f"http://amtool:wrong@127.0.0.1:{daemon.port}"
    code, out, err = await amtool(wrong, "alert", "query")
    assert code != 0 and "401" in err, err
    status, _ = daemon.get("/metrics")
    assert status == 401


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
            return result
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # still starting
            return []
        raise


def test_prometheus_scrapes_and_sends_alerts_with_basic_auth(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    binary = require_binary("prometheus")
    home = tmp_path / "prometheus"
    home.mkdir()
    (home / "rules.yml").write_text(
        "groups:\n  - name: g\n    interval: 1s\n    rules:\n"
        "      - {alert: ScrapedWithAuth, expr: 'up{job=\"pudimd\"} == 1'}\n"
    )
    basic = f"basic_auth: {{username: prometheus, password: {PASSWORD}}}"
    (home / "prometheus.yml").write_text(
        f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{home / "rules.yml"}]
scrape_configs:
  - job_name: pudimd
    {basic}
    static_configs: [{{targets: ["127.0.0.1:{daemon.port}"]}}]
  - job_name: pudimd-no-auth
    static_configs: [{{targets: ["127.0.0.1:{daemon.port}"]}}]
alerting:
  alertmanagers:
    - {basic}
      static_configs: [{{targets: ["127.0.0.1:{daemon.port}"]}}]
"""
    )
    port = free_port()
    argv = [
        binary,
        f"--config.file={home / 'prometheus.yml'}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",
    ]
    with run_server("prometheus", argv, port, within=30):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        up: dict[str, str] = {}
        names: list[str] = []
        while time.monotonic() < deadline:
            up = {r["metric"]["job"]: r["value"][1] for r in _query(url, "up")}
            status, text = daemon.get("/api/v2/alerts?filter=alertname%3DScrapedWithAuth")
            assert status == 200, text
            names = [a["labels"]["alertname"] for a in json.loads(text)]
            if up.get("pudimd") == "1" and up.get("pudimd-no-auth") == "0" and names:
                break
            time.sleep(0.5)
        assert up == {"pudimd": "1", "pudimd-no-auth": "0"}
        assert names == ["ScrapedWithAuth"], "Prometheus sent its alert with basic auth"


async def test_amtool_with_an_api_token(daemon: DaemonProcess, tmp_path: Path) -> None:
    config = tmp_path / "amtool-http.yml"
    config.write_text(f"authorization: {{credentials: {daemon.token}}}\n")
    code, _, err = await amtool(daemon.url, f"--http.config.file={config}", "alert", "query")
    assert code == 0, err
    config.write_text("authorization: {credentials: pudimd_wrong}\n")
    code, _, err = await amtool(daemon.url, f"--http.config.file={config}", "alert", "query")
    assert code != 0 and "401" in err, err
