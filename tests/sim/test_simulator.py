"""Tests for archiver.sim.simulator over real HTTP on 127.0.0.1: the documented answers, escaping,
keep-alive speed, reproducible fault injection and loopback-only binding, because demos, client
tests and benchmarks all stand on this fake behaving like the API."""

from __future__ import annotations

import csv
import http.client
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from archiver.errors import ConfigError
from archiver.sim import jobgen, payloads
from archiver.sim.simulator import Faults, Simulator

pytestmark = pytest.mark.integration  # the simulator is served over real HTTP on 127.0.0.1

KEY = "sim-key"
INVALID_KEY_BODY = {
    "error": {"code": "invalid_api_key", "message": "the API key is not valid", "details": None}
}


class FakeClock:
    """A clock the test moves by hand: no sleeping through lifecycles."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job_path(workflow_id: str, job_id: str) -> str:
    return f"/v0/workflows/{quote(workflow_id, safe='')}/jobs/{quote(job_id, safe='')}"


class Client:
    """A keep-alive ``http.client`` connection that reconnects after a dropped one."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    def get(
        self, path: str, key: str | None = KEY
    ) -> tuple[int, http.client.HTTPMessage | None, bytes]:
        """(status, headers, body); status 0 when the server closed without answering."""
        headers = {} if key is None else {"Authorization": key}
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.headers, response.read()
        except (http.client.RemoteDisconnected, ConnectionError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            return 0, None, b""

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(seed=1, jobs=12, clock=clock, tasks=(3, 6), forbidden=[("wf-secret", "j-1")])


@pytest.fixture
def client(sim: Simulator) -> Iterator[Client]:
    with sim.serve() as server:
        client = Client(server.port)
        yield client
        client.close()


def serve_and_collect(sim: Simulator, paths: list[str]) -> list[str]:
    """Outcome labels (see ``classify``) for each path, asked in order on one connection."""
    with sim.serve() as server:
        client = Client(server.port)
        out = [classify(path, *client.get(path)) for path in paths]
        client.close()
    return out


def classify(path: str, status: int, headers: Any, body: bytes) -> str:
    if status == 0:
        return "drop"
    if status != 200:
        return f"status:{status}"
    if headers["Content-Type"] != "application/json":
        return "malformed:html"
    try:
        doc = json.loads(body)
    except ValueError:
        return "malformed:truncated"
    if "error" in doc:
        return "malformed:error_body"
    if not path.endswith(quote(doc["id"], safe="")):
        return "malformed:wrong_job"
    return "ok"


# --- the documented answers -------------------------------------------------------------------


def test_known_job_answers_its_payload(sim: Simulator, client: Client, clock: FakeClock) -> None:
    clock.now += 12.5
    for workflow_id, job_id in sim.job_ids():
        status, headers, body = client.get(job_path(workflow_id, job_id))
        assert status == 200
        assert headers is not None and headers["Content-Type"] == "application/json"
        assert int(headers["Content-Length"]) == len(body)
        assert json.loads(body) == sim.payload(workflow_id, job_id)


def test_bearer_prefix_is_accepted(sim: Simulator, client: Client) -> None:
    assert client.get(job_path(*sim.job_ids()[0]), key=f"Bearer {KEY}")[0] == 200


@pytest.mark.parametrize("key", [None, "", "wrong", "Bearer wrong", f"{KEY}x", f"Basic {KEY}"])
def test_a_wrong_key_gets_the_documented_403(sim: Simulator, client: Client, key: str) -> None:
    status, _, body = client.get(job_path(*sim.job_ids()[0]), key=key)
    assert status == 403
    assert json.loads(body) == INVALID_KEY_BODY


def test_an_unknown_job_is_404(sim: Simulator, client: Client) -> None:
    workflow_id, _ = sim.job_ids()[0]
    status, _, body = client.get(job_path(workflow_id, "no-such-job"))
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"
    assert sim.payload(workflow_id, "no-such-job") is None


def test_a_forbidden_job_is_403_forbidden(client: Client) -> None:
    status, _, body = client.get(job_path("wf-secret", "j-1"))
    assert status == 403
    assert json.loads(body)["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "path",
    [
        "/v0/workflows/wf-1/estimate/x",
        "/v0/workflows/wf-1/jobs/",
        "/v0/workflows//jobs/j-1",
        "/v0/workflows/wf-1/jobs/j-1/tasks",
        "/v0/workflows/wf-1/runs/j-1",
        "/v0/workflows/%ff%fe/jobs/j-1",
    ],
)
def test_a_malformed_path_is_400(client: Client, path: str) -> None:
    status, _, body = client.get(path)
    assert status == 400
    assert set(json.loads(body)["error"]) == {"code", "message", "details"}
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_an_unknown_route_is_404(client: Client) -> None:
    assert client.get("/v1/whatever")[0] == 404


def test_escaped_ids_are_decoded(clock: FakeClock) -> None:
    ids = [("wf/with slash", "jöb?#%1"), ("wf-plain", "job+plus&amp")]
    sim = Simulator(seed=2, jobs=0, ids=ids, clock=clock, tasks=(1, 2))
    assert sim.job_ids() == ids
    with sim.serve() as server:
        client = Client(server.port)
        for workflow_id, job_id in ids:
            status, _, body = client.get(job_path(workflow_id, job_id))
            assert status == 200
            doc = json.loads(body)
            assert (doc["workflow_id"], doc["id"]) == (workflow_id, job_id)
        # needlessly escaped characters decode too
        assert client.get("/v0/workflows/wf%2Dplain/jobs/job%2Bplus%26amp")[0] == 200
        client.close()


def test_the_population_is_listed_without_a_key(sim: Simulator, client: Client) -> None:
    status, _, body = client.get("/_sim/jobs", key=None)
    assert status == 200
    assert [(d["workflow_id"], d["job_id"]) for d in json.loads(body)] == sim.job_ids()
    assert sim.job_ids() == [jobgen.job_ids(1, i) for i in range(12)]


def test_lifecycles_follow_the_injected_clock(
    sim: Simulator, client: Client, clock: FakeClock
) -> None:
    paths = [job_path(*ids) for ids in sim.job_ids()]
    assert {json.loads(client.get(p)[2])["status"] for p in paths} == {"queued"}
    clock.now += sim.settle_time() + 1
    finals = [json.loads(client.get(p)[2]) for p in paths]
    assert {d["status"] for d in finals} <= {"completed", "failed", "cancelled"}
    clock.now += 3600
    assert [json.loads(client.get(p)[2]) for p in paths] == finals


@pytest.mark.parametrize("cache_jobs", [2048, 3])
def test_cached_bodies_equal_fresh_renders(cache_jobs: int) -> None:
    sim = Simulator(seed=1, jobs=12, tasks=(3, 6), cache_jobs=cache_jobs)
    for t in (0.0, 1.0, 4.0, 9.5, 20.0, 31.0, 45.0, 90.0, 90.0):
        for index in range(len(sim.job_ids())):
            expected = payloads.job_payload(sim.plan(index), t)  # plans are drawn in real seconds
            assert json.loads(sim.payload_bytes(index, t)) == expected


def test_keep_alive_is_fast(sim: Simulator) -> None:
    """200 sequential requests on one connection; ~40 ms each (8 s) if Nagle's algorithm met a
    response written in pieces, or if keep-alive broke and every request paid a handshake."""
    path = job_path(*sim.job_ids()[0])
    with sim.serve() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        started = time.monotonic()
        for _ in range(200):
            conn.request("GET", path, headers={"Authorization": KEY})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert response.headers.get("Connection") != "close"
        elapsed = time.monotonic() - started
        conn.close()
        assert server.request_count == 200
    assert elapsed < 3.0


def test_connection_close_is_honoured(sim: Simulator) -> None:
    with sim.serve() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/_sim/jobs", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.headers["Connection"] == "close"
        assert json.loads(response.read())
        conn.close()


# --- faults -----------------------------------------------------------------------------------


def broad(outcome: str) -> str:
    if outcome.startswith("malformed:"):
        return "malformed"
    return "status:5xx" if outcome in {"status:500", "status:502", "status:503"} else outcome


def paths_for(sim: Simulator, count: int) -> list[str]:
    ids = sim.job_ids()
    return [job_path(*ids[i % len(ids)]) for i in range(count)]


@pytest.mark.parametrize(
    ("faults", "label"),
    [
        (Faults(error_rate=0.2), "status:5xx"),
        (Faults(rate_limit_rate=0.2), "status:429"),
        (Faults(malformed_rate=0.2), "malformed"),
        (Faults(drop_rate=0.2), "drop"),
    ],
)
def test_each_fault_shows_at_roughly_its_rate(clock: FakeClock, faults: Faults, label: str) -> None:
    sim = Simulator(seed=4, jobs=10, clock=clock, tasks=(1, 3), faults=faults)
    kinds = Counter(map(broad, serve_and_collect(sim, paths_for(sim, 400))))
    assert set(kinds) == {"ok", label}
    assert 0.13 <= kinds[label] / 400 <= 0.27


def test_faults_are_reproducible_for_a_seed(clock: FakeClock) -> None:
    faults = Faults(error_rate=0.1, rate_limit_rate=0.1, malformed_rate=0.1, drop_rate=0.1)

    def run(seed: int) -> list[str]:
        sim = Simulator(seed=seed, jobs=8, clock=clock, tasks=(1, 3), faults=faults)
        return serve_and_collect(sim, paths_for(sim, 120))

    first = run(5)
    assert run(5) == first
    assert len(set(first)) >= 5
    sim6 = Simulator(seed=6, jobs=8, clock=clock, tasks=(1, 3), faults=faults)
    assert serve_and_collect(sim6, paths_for(sim6, 120)) != first


def test_every_kind_of_malformed_answer_occurs(clock: FakeClock) -> None:
    sim = Simulator(seed=8, jobs=6, clock=clock, tasks=(1, 3), faults=Faults(malformed_rate=1.0))
    kinds = Counter(serve_and_collect(sim, paths_for(sim, 80)))
    assert set(kinds) == {
        "malformed:truncated",
        "malformed:html",
        "malformed:error_body",
        "malformed:wrong_job",
    }


def test_server_errors_and_rate_limits_look_real(clock: FakeClock) -> None:
    faults = Faults(error_rate=0.5, rate_limit_rate=0.5, retry_after=7)
    sim = Simulator(seed=9, jobs=4, clock=clock, tasks=(1, 2), faults=faults)
    seen: Counter[int] = Counter()
    with sim.serve() as server:
        client = Client(server.port)
        for path in paths_for(sim, 60):
            status, headers, body = client.get(path)
            seen[status] += 1
            assert headers is not None
            if status == 429:
                assert headers["Retry-After"] == "7"
                assert json.loads(body)["error"]["code"] == "rate_limited"
            elif status == 502:
                assert headers["Content-Type"] == "text/html"
        client.close()
    assert set(seen) == {429, 500, 502, 503}


def test_latency_is_added(clock: FakeClock) -> None:
    faults = Faults(latency=0.05, latency_jitter=0.02)
    sim = Simulator(seed=1, jobs=2, clock=clock, tasks=(1, 2), faults=faults)
    with sim.serve() as server:
        client = Client(server.port)
        for path in paths_for(sim, 3):
            started = time.monotonic()
            assert client.get(path)[0] == 200
            assert 0.05 <= time.monotonic() - started < 1.0
        client.close()


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ConfigError):
        Faults(error_rate=0.7, drop_rate=0.5)
    with pytest.raises(ConfigError):
        Faults(error_rate=-0.1)
    with pytest.raises(ConfigError):
        Faults(latency=-1)


# --- serving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_only_loopback_addresses_are_bound(sim: Simulator, host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        sim.serve(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_served(sim: Simulator, host: str) -> None:
    with sim.serve(host=host) as server:
        assert server.url == f"http://{server.host}:{server.port}"
        client = Client(server.port, server.host)
        assert client.get("/_sim/jobs")[0] == 200
        client.close()


def test_ipv6_loopback(sim: Simulator) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = sim.serve(host="::1")
    except OSError:
        pytest.skip("::1 cannot be bound here")
    with server:
        assert server.url == f"http://[::1]:{server.port}"
        conn = http.client.HTTPConnection("::1", server.port, timeout=10)
        conn.request("GET", "/_sim/jobs")
        assert conn.getresponse().status == 200
        conn.close()


def test_stop_ends_open_connections_and_wait(sim: Simulator) -> None:
    server = sim.serve()
    client = Client(server.port)
    assert client.get("/_sim/jobs")[0] == 200
    assert server.wait(timeout=0.01) is False
    server.stop()
    server.stop()  # idempotent
    assert server.wait() is True
    assert client.get("/_sim/jobs")[0] == 0  # the kept-alive connection was closed
    with pytest.raises(ConnectionError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_write_ids_csv(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    sim.write_ids_csv(path)
    rows = list(csv.reader(path.open(encoding="utf-8")))
    assert rows[0] == ["workflow_id", "job_id"]
    assert [tuple(r) for r in rows[1:]] == sim.job_ids()


def test_constructor_arguments_are_validated() -> None:
    with pytest.raises(ConfigError):
        Simulator(time_scale=0)
    with pytest.raises(ConfigError):
        Simulator(tasks=(3, 1))


def test_the_simulator_imports_neither_requests_nor_sqlalchemy() -> None:
    code = (
        "import sys, archiver.sim.simulator; "
        "bad = {'requests', 'sqlalchemy'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
