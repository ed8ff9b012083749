"""Run events: the file is always written; reporting to the API is retried and never fatal."""

from __future__ import annotations

import json
import socket

from trainer_bridge.training.events import EventSink, is_main_process


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_event_is_one_strict_json_line(tmp_path):
    path = tmp_path / "run" / "events.jsonl"
    sink = EventSink(path)
    sink.started("rm", {"train": 3, "validation": 1, "dropped_too_long": 0})
    sink.metrics(4, {"loss": float("nan"), "accuracy": 0.75})
    sink.metrics(5, {})  # nothing to say: no line
    sink.log("halfway")
    sink.succeeded(str(tmp_path / "out"), {"validation_accuracy": float("inf"), "steps": 4})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert _lines(path) == [
        {
            "type": "started",
            "stage": "rm",
            "rows": {"train": 3, "validation": 1, "dropped_too_long": 0},
        },
        {"type": "metrics", "step": 4, "values": {"loss": None, "accuracy": 0.75}},
        {"type": "log", "message": "halfway"},
        {
            "type": "finished",
            "state": "succeeded",
            "output": str(tmp_path / "out"),
            "summary": {"validation_accuracy": None, "steps": 4},
        },
    ]


def test_a_disabled_sink_writes_nothing(tmp_path, events_server):
    sink = EventSink(
        tmp_path / "events.jsonl", report_url=events_server.url, token="t", enabled=False
    )
    sink.failed("boom")
    assert not (tmp_path / "events.jsonl").exists()
    assert events_server.requests == []


def test_only_rank_zero_is_the_main_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_events_are_posted_with_the_run_token(tmp_path, events_server, monkeypatch):
    monkeypatch.setenv("PARLEY_RUN_TOKEN", "secret-run-token")
    sink = EventSink(tmp_path / "events.jsonl", report_url=events_server.url)
    sink.started("ppo", {"train": 2, "validation": 0, "dropped_too_long": 0})
    sink.metrics(1, {"reward": 0.5, "kl": 0.01})
    assert [r["authorization"] for r in events_server.requests] == ["RunToken secret-run-token"] * 2
    assert [r["body"] for r in events_server.requests] == [
        {
            "events": [
                {
                    "type": "started",
                    "stage": "ppo",
                    "rows": {"train": 2, "validation": 0, "dropped_too_long": 0},
                }
            ]
        },
        {"events": [{"type": "metrics", "step": 1, "values": {"reward": 0.5, "kl": 0.01}}]},
    ]
    assert events_server.requests[0]["path"] == "/api/v1/runs/7/events"


def test_a_failing_api_gets_the_events_again_with_the_next_batch(tmp_path, events_server):
    events_server.statuses = [503, 503, 503]  # all three tries of the first event fail
    sink = EventSink(tmp_path / "events.jsonl", report_url=events_server.url, token="t", backoff=0)
    sink.metrics(1, {"loss": 1.0})
    assert len(events_server.requests) == 3 and sink.pending
    sink.metrics(2, {"loss": 0.5})
    last = events_server.requests[-1]
    assert last["status"] == 202
    assert [e["step"] for e in last["body"]["events"]] == [1, 2]
    assert sink.pending == []
    # The file has each event once, whatever the API did.
    assert [e["step"] for e in _lines(tmp_path / "events.jsonl")] == [1, 2]


def test_a_refusal_is_not_retried(tmp_path, events_server):
    events_server.statuses = [401]
    sink = EventSink(tmp_path / "events.jsonl", report_url=events_server.url, token="wrong")
    sink.log("hello")
    assert len(events_server.requests) == 1
    assert sink.pending == []
    assert sink.report_failures == 1


def test_an_unreachable_api_never_stops_the_run(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/events"
    sink = EventSink(tmp_path / "events.jsonl", report_url=url, token="t", backoff=0, timeout=2)
    for step in range(3):
        sink.metrics(step, {"loss": 1.0})
    sink.failed("the stage broke")
    assert len(_lines(tmp_path / "events.jsonl")) == 4
    assert len(sink.pending) == 4  # kept for a later try
    # After the first event exhausted its tries, later ones tried once each; the final one
    # gets the full count again.
    assert sink.report_failures == 3 + 1 + 1 + 5
