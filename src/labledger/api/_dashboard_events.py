"""The event browser: the log's streams, a stream's events, and any one event's JSON
with its neighbours in the log and in its stream. Chart points link here."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import HTMLResponse

from labledger.api import _queries as q
from labledger.api._dashboard_runs import RunParam, choose
from labledger.api._deps import Reader, State
from labledger.api._html import code, event_link, form, heading, link, render, table, text, when
from labledger.store import RecordedEvent, json_object

router = APIRouter(include_in_schema=False)
MAX_STREAMS = 500
STREAM_PAGE = 200
NEIGHBOURS = 3
Text = Annotated[str, Query(max_length=256)]


def _rows(events: list[RecordedEvent]) -> list[list[Any]]:
    return [
        [
            event_link(e.position),
            e.stream,
            e.stream_version,
            e.type,
            e.run_id,
            e.actor,
            when(e.recorded_at_us),
        ]
        for e in events
    ]


HEADERS = ["event", "stream", "version", "type", "run", "actor", "recorded (UTC)"]


@router.get("/ui/events")
def events_page(
    state: State, _: Reader, run: RunParam = None, prefix: Text = "", stream: Text = ""
) -> HTMLResponse:
    """Streams (by prefix), one stream's latest events, or the chosen run's first events."""
    chosen = choose(state, run, "/ui/events", keep=[("prefix", prefix)] if prefix else [])
    streams = state.store.streams(prefix)
    shown = sorted(streams, key=lambda s: -s.last_position)[:MAX_STREAMS]
    sections = [
        form("/ui/events", "stream prefix", "prefix", prefix, "list streams", []),
        heading(f"Streams ({len(streams)}, the {len(shown)} latest shown)"),
        table(
            "streams",
            ["stream", "events", "last event"],
            [
                [
                    link(f"/ui/events?stream={s.stream}", s.stream),
                    s.version + 1,
                    event_link(s.last_position),
                ]
                for s in shown
            ],
        ),
    ]
    if stream:
        last = state.store.stream_version(stream)
        if last < 0:
            raise HTTPException(404, f"no stream {stream!r}")
        events = state.store.read_stream(stream, max(0, last - STREAM_PAGE + 1), STREAM_PAGE)
        sections += [
            heading(f"Stream {stream} (latest {len(events)})"),
            table("stream-events", HEADERS, _rows(events)),
        ]
    for r in chosen.runs[:1] if not stream else []:
        events, more = q.run_events(state.store, r, 1, STREAM_PAGE)
        title = f"Run {r['run_id']}" + (f" (first {len(events)} events)" if more else "")
        sections += [heading(title), table("run-events", HEADERS, _rows(events))]
    return render(
        "events", "Event browser", sections, head=state.store.head(), selector=chosen.selector
    )


def _at(state: State, position: int) -> RecordedEvent | None:
    found = next(iter(state.store.read_all(position, limit=1)), None)
    return found if found is not None and found.position == position else None


@router.get("/ui/events/{position}")
def event_page(
    state: State, _: Reader, position: Annotated[int, Path(ge=1, le=2**62)]
) -> HTMLResponse:
    """One event: its envelope, its data as JSON, and its neighbours."""
    event = _at(state, position)
    if event is None:
        raise HTTPException(404, f"no event at position {position}")
    doc = json_object(event)
    data = msgspec.json.format(event.data).decode()
    metadata = msgspec.json.format(event.metadata).decode()
    around = state.store.read_stream(
        event.stream, max(0, event.stream_version - NEIGHBOURS), 2 * NEIGHBOURS + 1
    )
    previous = _at(state, position - 1) if position > 1 else None
    following = _at(state, position + 1)
    envelope = [k for k in doc if k not in ("data", "metadata")]
    parts: list[Any] = []
    if previous is not None:
        parts += [
            link(f"/ui/events/{previous.position}", f"← {previous.position} {previous.type}"),
            " · ",
        ]
    parts += [link(f"/ui/events?stream={event.stream}", f"stream {event.stream}")]
    if event.run_id:
        parts += [" · ", link(f"/ui/runs/{event.run_id}", f"run {event.run_id}")]
    command_id = _command_id(event)
    if command_id:
        parts += [" · ", link(f"/ui/audit?command_id={command_id}", f"audit chain of {command_id}")]
    if following is not None:
        parts += [
            " · ",
            link(f"/ui/events/{following.position}", f"{following.position} {following.type} →"),
        ]
    sections = [
        text(*parts, text_id="neighbours"),
        table("envelope", envelope, [[doc[k] for k in envelope]]),
        heading("Data", 3),
        code("event-data", data),
        heading("Metadata", 3),
        code("event-metadata", metadata),
        heading(f"Neighbours in stream {event.stream}", 3),
        table("stream-neighbours", HEADERS, _rows(around)),
    ]
    return render("events", f"Event {position} · {event.type}", sections, head=state.store.head())


def _command_id(event: RecordedEvent) -> str | None:
    try:
        data = msgspec.json.decode(event.data)
    except msgspec.DecodeError:
        return None
    value = data.get("command_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
