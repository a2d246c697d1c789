"""Rate limits over real HTTP: the seed requirement (10 requests/s per principal, bursts of 50).

Servers here run with the default plan (``DICOMVAULT_RATE_LIMIT_RATE=10``, ``..._BURST=50``, which
override the generous TEST_ENV) and the default failed-login plan. One server alone; then two
server processes on one data folder sharing one real Redis, like two replicas behind a load
balancer: the limit is one limit across both. Finally Redis goes away under them: requests go on
being served (per-process limits) and audited, never a 500.

Timing: GCRA admits the burst whatever the timing, but a request is refused only if it comes
within 0.1 s (one emission interval) of the burst's start. The bursts are sent concurrently so
that they arrive well within that; refills during a slow run are allowed for explicitly
(``_refills``), never by loosening the refusal itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.api.support import API_ENV, Api, bearer, unique
from tests.support.redis_server import running_redis
from tests.support.server import LiveServer, running_server

RATE, BURST = 10, 50
LIMITED_ENV = {
    **API_ENV,
    "DICOMVAULT_RATE_LIMIT_RATE": str(RATE),
    "DICOMVAULT_RATE_LIMIT_BURST": str(BURST),
    "DICOMVAULT_LOGIN_RATE": "0.2",
    "DICOMVAULT_LOGIN_BURST": "10",
}
ME = "/api/v1/auth/me"
WAIT = 1.05  # "about a second later": ten emission intervals and a little


@dataclass
class Burst:
    accepted: int
    refused: httpx.Response | None
    started: float  # time.monotonic() when the first request was sent
    ended: float  # ... and when the refusal (or the last answer) came

    @property
    def elapsed(self) -> float:
        return self.ended - self.started


def _refills(elapsed: float) -> int:
    """Requests GCRA may admit beyond the burst in ``elapsed`` seconds (one per 1/RATE s)."""
    return int(elapsed * RATE)


async def _until_refused(bases: list[str], token: str, count: int = BURST) -> Burst:
    """``count`` requests sent concurrently (round robin over ``bases``) must all pass; then one
    at a time until the first 429."""
    headers = bearer(token)
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.monotonic()
        # One request per server first: the revalidation cache is then warm for the burst.
        warm = [await client.get(base + ME, headers=headers) for base in bases]
        rest = count - len(warm)
        burst = await asyncio.gather(
            *(client.get(bases[i % len(bases)] + ME, headers=headers) for i in range(rest))
        )
        answers = [*warm, *burst]
        assert [r.status_code for r in answers] == [200] * count, [r.text for r in answers]
        for response in answers:
            _check_headers(response)
        extra = 0
        for i in range(30):
            response = await client.get(bases[i % len(bases)] + ME, headers=headers)
            if response.status_code == 429:
                return Burst(count + extra, response, started, time.monotonic())
            assert response.status_code == 200
            extra += 1
        return Burst(count + extra, None, started, time.monotonic())


async def _concurrently(bases: list[str], token: str, n: int) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(
            *(client.get(bases[i % len(bases)] + ME, headers=bearer(token)) for i in range(n))
        )
    return [r.status_code for r in answers]


def _check_headers(response: httpx.Response) -> None:
    """draft-ietf-httpapi-ratelimit-headers-07 on every answer: the burst per refill window."""
    assert response.headers["ratelimit-policy"] == f"{BURST};w={BURST // RATE}"
    assert re.fullmatch(r"limit=50, remaining=\d+, reset=\d+", response.headers["ratelimit"])


def _check_refusal(burst: Burst, count: int = BURST, after: Burst | None = None) -> None:
    """The refusal came as soon as GCRA allows: after ``count`` plus what refilled meanwhile.

    ``after``: the earlier burst this one waited on. Its refusal left the bucket empty at most
    one emission interval before the server handled it, and the server handled it shortly before
    its answer arrived (one more interval of slack); everything since then has refilled.
    """
    refused = burst.refused
    assert refused is not None, f"no 429 after {burst.accepted} requests"
    if after is None:
        allowed = count + _refills(burst.elapsed)
    else:
        allowed = _refills(burst.ended - after.ended + 2 / RATE)
    assert count <= burst.accepted <= allowed, burst
    if after is None and burst.elapsed < 1 / RATE:
        assert burst.accepted == count, burst  # the 51st, exactly
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    _check_headers(refused)
    assert re.fullmatch(r"limit=50, remaining=0, reset=[1-9]\d*", refused.headers["ratelimit"])


def _scenario(bases: list[str], token: str) -> None:
    """50 accepted back to back, the 51st refused; ~1 s later 10 more accepted, then refused."""
    first = asyncio.run(_until_refused(bases, token))
    _check_refusal(first)
    time.sleep(max(0.0, first.ended + WAIT - time.monotonic()))
    later = asyncio.run(_until_refused(bases, token, count=RATE))
    _check_refusal(later, count=RATE, after=first)


def _fresh_user(api: Api) -> str:
    account = api.user(["technician"], ["default"], prefix="limited")
    time.sleep(0.2)  # the /me of api.user() refills: the test starts with a full bucket
    return account.access_token


# -- one server ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("ratelimit-single") / "data"
    with running_server(data, env=LIMITED_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def single_api(single: LiveServer) -> Iterator[Api]:
    api = Api(single)
    yield api
    api.close()


def test_fifty_back_to_back_then_429_then_ten_a_second_later(single_api: Api) -> None:
    _scenario([single_api.server.base_url], _fresh_user(single_api))


def test_the_limit_is_per_principal(single_api: Api) -> None:
    """One principal's exhausted bucket does not refuse another (or the same IP's other user)."""
    first, second = _fresh_user(single_api), _fresh_user(single_api)
    base = [single_api.server.base_url]
    _check_refusal(asyncio.run(_until_refused(base, first)))
    assert asyncio.run(_concurrently(base, second, 20)) == [200] * 20


def test_failed_logins_are_limited_per_account_and_per_address(single_api: Api) -> None:
    victim = single_api.user(["technician"], ["default"], prefix="victim")
    bystander = single_api.user(["technician"], ["default"], prefix="bystander")

    def login(account_name: str, password: str, address: str) -> httpx.Response:
        return single_api.token_request(
            {"grant_type": "password", "username": account_name, "password": password},
            headers={"X-Forwarded-For": address},
        )

    for _ in range(10):
        assert login(victim.username, "wrong-password", "10.7.0.1").status_code == 400
    refused = login(victim.username, "wrong-password", "10.7.0.1")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == "10;w=50"
    # The account is held even with the right password from elsewhere ...
    assert login(victim.username, victim.password, "10.7.0.2").status_code == 429
    # ... and the address is held for other accounts.
    assert login(bystander.username, bystander.password, "10.7.0.1").status_code == 429
    # Others are not affected.
    assert login(bystander.username, bystander.password, "10.7.0.3").status_code == 200


def test_successful_logins_do_not_use_up_the_failed_login_budget(single_api: Api) -> None:
    account = single_api.user(["technician"], ["default"], prefix="often")
    for _ in range(12):
        single_api.login(account.username)


def test_failed_refreshes_are_limited_per_address(single_api: Api) -> None:
    """Guessing refresh tokens, over the token endpoint or the browser's renewal route."""
    account = single_api.user(["technician"], ["default"], prefix="renewer")

    def refresh(token: str, address: str) -> httpx.Response:
        return single_api.token_request(
            {"grant_type": "refresh_token", "refresh_token": token},
            headers={"X-Forwarded-For": address},
        )

    # Successful renewals cost nothing.
    token = single_api.login(account.username)["refresh_token"]
    for _ in range(12):
        renewed = refresh(token, "10.8.0.1")
        assert renewed.status_code == 200
        token = renewed.json()["refresh_token"]
    for guess in range(10):
        assert refresh(f"guess-{guess}", "10.8.0.1").status_code == 400
    refused = refresh(token, "10.8.0.1")  # even a good one, from that address
    assert refused.status_code == 429 and "renewals" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    cookies = {"dv_refresh": "guess", "dv_csrf": "c"}
    with httpx.Client(base_url=single_api.server.base_url, cookies=cookies, timeout=30) as page:
        held = page.post(
            "/api/v1/auth/session/refresh",
            headers={"X-CSRF-Token": "c", "X-Forwarded-For": "10.8.0.1"},
        )
    assert held.status_code == 429
    # The session itself is untouched, and renews from elsewhere.
    assert refresh(token, "10.8.0.2").status_code == 200


# -- two servers, one Redis ------------------------------------------------------------------------
@dataclass
class Pair:
    first: LiveServer
    second: LiveServer
    api: Api
    stack: contextlib.ExitStack
    redis_url: str

    @property
    def bases(self) -> list[str]:
        return [self.first.base_url, self.second.base_url]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    data = tmp_path_factory.mktemp("ratelimit-pair") / "data"
    with contextlib.ExitStack() as servers, contextlib.ExitStack() as redis_stack:
        url = redis_stack.enter_context(running_redis())
        env = {**LIMITED_ENV, "DICOMVAULT_REDIS_URL": url}
        first = servers.enter_context(running_server(data, env=env))
        second = servers.enter_context(running_server(data, env=env))
        api = Api(first)
        servers.callback(api.close)
        yield Pair(first, second, api, redis_stack, url)


def test_the_limit_holds_across_two_servers_sharing_redis(pair: Pair) -> None:
    token = _fresh_user(pair.api)
    # The same token works on both replicas (one database, one signing secret) ...
    for base in pair.bases:
        assert httpx.get(base + ME, headers=bearer(token)).status_code == 200
    time.sleep(0.3)
    # ... and both count into one bucket: 50 across the two, not 50 each.
    _scenario(pair.bases, token)


def test_a_redis_outage_degrades_to_per_process_limits_and_stays_audited(pair: Pair) -> None:
    token = _fresh_user(pair.api)
    pair.stack.close()  # Redis stops
    correlation = unique("redis-down")
    response = httpx.get(
        pair.first.dicomweb + "/studies",
        headers={**bearer(token), "X-Request-ID": correlation},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "ratelimit" in response.headers
    (record,) = pair.api.audit_of(correlation)
    assert record["event_id"] == "110112" and record["outcome"] == 0
    # Still limited, per process now.
    burst = asyncio.run(_until_refused([pair.first.base_url], _fresh_user(pair.api)))
    _check_refusal(burst)
    assert "redis unreachable" in pair.first.log()
