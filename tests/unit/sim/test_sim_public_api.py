"""The simulator's public names: the rest of the code base imports these and no others."""

from __future__ import annotations

import switchboard.sim


def test_public_names_are_pinned() -> None:
    assert sorted(switchboard.sim.__all__) == [
        "FaultKind",
        "FaultRates",
        "InvalidProfileError",
        "LatencyShift",
        "ProfileConfigError",
        "SimProfile",
        "SimServer",
        "SimStats",
        "builtin_profiles",
        "load_profiles",
        "parse_listen",
        "profiles_from_mapping",
        "run",
    ]
    for name in switchboard.sim.__all__:
        assert getattr(switchboard.sim, name) is not None


def test_listen_addresses_parse() -> None:
    from switchboard.sim import parse_listen

    assert parse_listen("127.0.0.1:8089") == ("127.0.0.1", 8089)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8089", "host:", ":80", "host:http", "host:70000"):
        try:
            parse_listen(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
