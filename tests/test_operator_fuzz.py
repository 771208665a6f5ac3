"""Fuzz regression of the acknowledgements and notes API against a real ``bridgemon run``:
no body gets a 500, every refusal names its field, nothing accepted is longer than the
bound, and whatever was stored never keeps the daemon from starting again. Bounded: a few
seconds each."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bridgemon.testrun.notes import MAX_NOTE
from tests.conftest import free_port, needs_root
from tests.daemon_process import Daemon
from tests.helpers import write_inventory
from tests.test_operator_actions import EVENT, event_toml
from tests.test_web_fuzz import AUTH, EXTRA, FUZZ, SITES, json_values

pytestmark = needs_root

texts = st.one_of(st.text(max_size=40), st.text(min_size=MAX_NOTE - 2, max_size=MAX_NOTE + 3),
                  st.sampled_from(["", " ", "\r\n", "\x00", "49", "502", "khong-co"]))
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["site", "note", "action", "text", "event", "x"]),
                    st.one_of(texts, json_values,
                              st.sampled_from(["take", "release", EVENT, "502", "20335"])),
                    max_size=4),
)
paths = st.sampled_from([f"/api/v1/events/{EVENT}/acks", "/api/v1/events/khong-co/acks",
                         "/api/v1/sites/502/notes", "/api/v1/sites/20335/notes",
                         "/api/v1/sites/khong-co/notes"])


def test_no_ack_or_note_body_gets_a_500(tmp_path: Path) -> None:
    port = free_port()
    config = write_inventory(tmp_path / "sites.toml", SITES, port=port, interval="5s",
                             extra=EXTRA + event_toml(participants="under:502"))
    daemon = Daemon(config, port, tmp_path / "bridgemon.log")

    @FUZZ
    @given(path=paths, body=bodies)
    def post(path: str, body: Any) -> None:
        status, answer = daemon.json("POST", path, body, AUTH)
        assert status in (200, 201, 400, 404, 409), (status, answer, body)
        if status >= 400:
            assert answer["error"] and isinstance(answer.get("field"), str), answer
        elif status == 201:
            stored = answer.get("note", answer.get("text"))
            assert isinstance(stored, str) and len(stored) <= MAX_NOTE

    try:
        post()
    finally:
        daemon.stop()
    again = Daemon(config, port, tmp_path / "again.log")
    try:
        for path in (f"/api/v1/events/{EVENT}/acks", "/api/v1/sites/502/notes"):
            deadline = time.monotonic() + 20
            status, _, raw = again.request("GET", path, headers=AUTH)
            while status == 503 and time.monotonic() < deadline:  # reading saved events
                time.sleep(0.1)
                status, _, raw = again.request("GET", path, headers=AUTH)
            assert status == 200, raw
            assert isinstance(json.loads(raw), dict)
    finally:
        again.stop()
