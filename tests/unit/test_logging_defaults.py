"""The CLI's logging setup keeps chatty libraries at WARNING.

httpx logs every request's URL at INFO (a URL can carry a key), and litellm's
loggers follow the root level unless told otherwise; with `--log-level INFO`
they would log every upstream call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.cli import QUIET_LOGGERS, configure_logging, main

NOISY = ("httpx", "httpcore", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "aiohttp.access")
URL = "http://upstream.test/v1/chat/completions?key=sk-secret"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Logging is process-wide: put back what the setup under test changes."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in NOISY})
    yield
    root.setLevel(saved[0])
    for handler in root.handlers[:]:
        if handler not in saved[1]:
            root.removeHandler(handler)
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_every_noisy_logger_is_covered() -> None:
    assert set(NOISY) <= set(QUIET_LOGGERS)


@pytest.mark.parametrize(("level", "floor"), [("DEBUG", 30), ("info", 30), ("ERROR", 40)])
def test_setup_keeps_libraries_at_warning_or_above(level: str, floor: int) -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET)
    configure_logging(level)
    import litellm  # noqa: F401  # imported after the setup, as `serve` does

    assert logging.getLogger().level == logging.getLevelName(level.upper())
    assert {name: logging.getLogger(name).getEffectiveLevel() for name in NOISY} == dict.fromkeys(
        NOISY, floor
    )
    assert logging.getLogger("switchboard.gateway").getEffectiveLevel() == logging.getLevelName(
        level.upper()
    )


def test_the_cli_entry_point_runs_the_setup(tmp_path: Path) -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET)
    # A missing file fails check-config, after the logging setup already ran.
    assert main(["--log-level", "DEBUG", "check-config", str(tmp_path / "missing.yaml")]) != 0
    assert logging.getLogger().level == logging.DEBUG
    for name in NOISY:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name


async def _request() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=transport) as client:
        (await client.post(URL, json={})).raise_for_status()


def _url_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "upstream.test" in r.getMessage()]


async def test_an_httpx_request_logs_no_url_after_setup(caplog: pytest.LogCaptureFixture) -> None:
    # Without the setup, the root at INFO lets httpx log the URL: this is the line to silence.
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.NOTSET)
    await _request()
    before = _url_lines(caplog)
    assert before, "httpx no longer logs requests at INFO; this test checks nothing"
    assert {r.name for r in caplog.records if "upstream.test" in r.getMessage()} == {"httpx"}
    caplog.clear()

    configure_logging("INFO")
    await _request()
    assert _url_lines(caplog) == []
    # The setup silences the library, not INFO as a whole.
    logging.getLogger("switchboard.gateway").info("still logged")
    assert [r.getMessage() for r in caplog.records] == ["still logged"]
