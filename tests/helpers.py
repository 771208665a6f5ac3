"""Small helpers the tests share: writing inventories and polling a running monitor."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridgemon import compiled
from bridgemon.config import load_config
from bridgemon.daemon import Monitor
from tests.conftest import free_port

FAST_MONITOR = """
[monitor]
listen = "127.0.0.1:{port}"
interval = "{interval}"
window = {window}

[profiles.default]
[profiles.default.icmp]
count = {count}
spacing = "{spacing}"
timeout = "{timeout}"
"""


def inventory_toml(
    sites: list[dict[str, Any]],
    *,
    port: int,
    interval: str = "2s",
    window: int = 3,
    count: int = 3,
    spacing: str = "50ms",
    timeout: str = "500ms",
    levels: list[str] | None = None,
    extra: str = "",
) -> str:
    text = FAST_MONITOR.format(
        port=port, interval=interval, window=window, count=count, spacing=spacing,
        timeout=timeout,
    )
    if levels is not None:
        for level in levels:
            text += f'\n[[levels]]\nid = "{level}"\n'
    text += extra
    for site in sites:
        text += "\n[[sites]]\n"
        for key, value in site.items():
            text += f"{key} = {toml_value(value)}\n"
    return text


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def write_inventory(path: Path, sites: list[dict[str, Any]], **kwargs: Any) -> Path:
    path.write_text(inventory_toml(sites, **kwargs), encoding="utf-8")
    return path


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    status, body = get(url)
    assert status == 200, body
    return json.loads(body)


def post(url: str, timeout: float = 10) -> tuple[int, Any]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Metric name (sample name) -> [(labels, value)]."""
    status, body = get(url)
    assert status == 200
    return parse_exposition(body.decode())


Samples = dict[str, list[tuple[dict[str, str], float]]]


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    matches = [
        v for got, v in samples.get(metric, [])
        if all(got.get(k) == want for k, want in labels.items())
    ]
    assert len(matches) == 1, f"{metric}{labels}: {len(matches)} samples"
    return matches[0]


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_sync(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- async variants, for tests whose monitor runs in the test's own event loop -------------


async def aget(url: str, timeout: float = 10) -> tuple[int, bytes]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.get(url) as response,
    ):
        return response.status, await response.read()


async def aget_json(url: str) -> Any:
    status, body = await aget(url)
    assert status == 200, body
    return json.loads(body)


async def apost(url: str, timeout: float = 10) -> tuple[int, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(url) as response,
    ):
        return response.status, json.loads(await response.read())


async def ascrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, body = await aget(url)
    assert status == 200
    return parse_exposition(body.decode())


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


async def await_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll an async predicate until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def one_check_inventory(check_name: str, check: str, *, address: str = "127.0.0.1",
                        interval: str = "30s", site_extra: str = "") -> str:
    """An inventory of one site "a" whose level's profile has one check, ``check_name``,
    with the TOML lines ``check``; ``site_extra`` is appended to the site."""
    return f'''
[monitor]
interval = "{interval}"

[profiles.default.icmp]
count = 2
spacing = "50ms"
timeout = "500ms"

[profiles.codec.checks.{check_name}]
{check}
[[levels]]
id = "xa"
profile = "codec"

[[sites]]
id = "a"
name = "Điểm cầu A"
level = "xa"
address = "{address}"
{site_extra}'''


def config_errors(text: str) -> list[str]:
    """The loader's problems with ``text`` (as sites.toml), one line each; it must refuse."""
    from bridgemon.config import ConfigError, parse_config

    try:
        parse_config(text, Path("sites.toml"))
    except ConfigError as caught:
        return [str(issue) for issue in caught.issues]
    raise AssertionError("the loader accepted it")


def patches_hot_modules(test: Callable[..., Any]) -> Callable[..., Any]:
    """For a test that patches the internals of a hot module (``bridgemon.compiled``):
    compiled, a native class's methods are read-only and a module's functions are called
    directly, past any patch. While they run compiled, the test runs in a process of its
    own where they run from source (``BRIDGEMON_PURE=1``)."""
    where = f"{inspect.getsourcefile(test)}::{test.__name__}"
    if inspect.iscoroutinefunction(test):
        @functools.wraps(test)
        async def run_async(*args: Any, **kwargs: Any) -> None:
            if compiled.ACTIVE:
                _run_pure(where)
            else:
                await test(*args, **kwargs)
        return run_async

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        if compiled.ACTIVE:
            _run_pure(where)
        else:
            test(*args, **kwargs)
    return run


def _run_pure(test: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "BRIDGEMON_PURE": "1"},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout, out.stdout[-3000:]


def load_script(name: str) -> ModuleType:
    """One of the repository's scripts/ (not a package) as a module."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def running_monitor(inventory: Path) -> AsyncIterator[Monitor]:
    """The daemon on INVENTORY in this event loop, started and stopped around the block."""
    running = Monitor(load_config(inventory))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


PROMETHEUS = shutil.which("prometheus")


@contextmanager
def running_prometheus(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Prometheus (the Debian package) on 127.0.0.1 with CONFIG, its storage and log
    in TMP; its URL once it is ready."""
    assert PROMETHEUS is not None
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp / "log").open("wb") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp / "log").read_text(encoding="utf-8")[-2000:]
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
