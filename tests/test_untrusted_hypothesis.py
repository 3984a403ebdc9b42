"""Random bytes in every record field (and random text in every name), through every CLI
text formatter and every TUI cell and panel formatter: no exception, and nothing but
lagdeck's own styling is a control character once written to a terminal.

The record goes through the real decoders (`decode_envelope`, `DeadLetterInfo`), then
through `dlq list`/`dlq show`/`trace`/`lag`/`watch`/`replay`/`redrive`'s text output
and the console's table rows (via `KeyedTable`'s cell function), detail panes,
summaries and dialogs, rendered to ANSI by rich exactly as Textual would get them.
"""

from __future__ import annotations

import io
import json
import struct
from contextlib import redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from collectors.alerts.evaluate import evaluate
from collectors.alerts.rules import parse_rules_text
from collectors.snapshots import GroupLag, Header, LagSnapshot, Member, PartitionLag, Record, Status
from collectors.untrusted import block, escape, json_text, one_line
from console.commands import dlq as dlq_cmd
from console.commands import lag as lag_cmd
from console.commands import replay as replay_cmd
from console.commands import trace as trace_cmd
from console.commands import watch as watch_cmd
from console.data import AlertsView
from console.screens import alerts, dead_letters, group, overview, redrive, replay, timeline
from console.widgets import format as fmt
from console.widgets.keyed_table import cell
from dlq.browse import DeadLetter
from dlq.discovery import DlqTopicSummary, ErrorCount
from dlq.redrive import RedriveResult, RedriveSample
from dlq.replay import PartitionReset, ReplayPlan, ResetSpec
from tests.hostile import unsafe_chars, without_styling
from tracing.deadletter import decode_envelope
from tracing.extract import DeadLetterInfo
from tracing.timeline import SpanInfo, Timeline, TimelineEvent

#: any code point, lone surrogates included (names come through decoders that may keep them)
names = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
                max_size=40)
raw = st.binary(max_size=300)
# bytes that look like text more often than random bytes do: escapes, markup, bidi
texty = st.one_of(raw, names.map(lambda t: t.encode("utf-8", "surrogatepass")),
                  st.sampled_from([b"[/]", b"\x1b[2J\x1b]0;x\x07", "\u202e\u200b".encode(),
                                   b"\xff\xfe", b"a\nb\r\n", b"[link=http://x]y[/link]"]))


@st.composite
def dead_letter(draw) -> DeadLetter:
    spring = [
        ("kafka_dlt-original-topic", draw(texty)),
        ("kafka_dlt-original-partition", draw(st.one_of(raw, st.just(struct.pack(">i", 1))))),
        ("kafka_dlt-original-offset", draw(st.one_of(raw, st.just(struct.pack(">q", 7))))),
        ("kafka_dlt-original-consumer-group", draw(texty)),
        ("kafka_dlt-exception-fqcn", draw(texty)),
        ("kafka_dlt-exception-message", draw(texty)),
        ("kafka_dlt-exception-stacktrace", draw(texty)),
    ]
    extra = draw(st.lists(st.tuples(names, st.one_of(st.none(), texty)), max_size=4))
    headers = (spring if draw(st.booleans()) else []) + extra
    record = Record(draw(names), 0, draw(st.integers(0, 2**40)), draw(st.integers(0, 2**42)),
                    draw(st.one_of(st.none(), texty)), draw(st.one_of(st.none(), texty)),
                    tuple(Header(k, v) for k, v in headers))
    return DeadLetter(record, decode_envelope(record))


def _terminal(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def assert_clean(*outputs: object) -> None:
    for out in outputs:
        text = out if isinstance(out, str) else without_styling(_terminal(out))
        assert unsafe_chars(text) == [], f"control characters in {text[:300]!r}"


def assert_cells(cells) -> None:
    for value in cells:
        c = cell(value)
        assert isinstance(c, Text)
        assert_clean(c)
        assert "\n" not in c.plain


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(text=st.one_of(names, raw), limit=st.one_of(st.none(), st.integers(1, 200)))
def test_the_one_rule(text, limit):
    line = one_line(text, limit)
    assert unsafe_chars(line, allow="") == []
    assert limit is None or len(line) <= limit
    assert unsafe_chars(block(text), allow="\n\t") == []  # line breaks and tabs kept
    assert escape(escape(as_str := one_line(text))) == as_str  # idempotent
    doc = json_text(json.dumps({"v": text if isinstance(text, str) else text.hex()},
                               ensure_ascii=False, indent=2))
    assert unsafe_chars(doc) == []
    doc.encode("utf-8")  # valid UTF-8 whatever the input (lone surrogates escaped)
    assert json.loads(doc)["v"] == (text if isinstance(text, str) else text.hex())


@SETTINGS
@given(dl=dead_letter(), selected=st.booleans())
def test_dead_letters_through_every_dlq_formatter(dl, selected):
    # CLI: dlq show, dlq list, redrive's summary
    assert_clean("\n".join(dlq_cmd.record_lines(dl)))
    e, r = dl.envelope, dl.record
    summary = DlqTopicSummary(r.topic, 3, 1, r.timestamp_ms, r.timestamp_ms,
                              (ErrorCount(e.error_class or "", 2),), 3, "name", ("spring",))
    assert_clean("\n".join(dlq_cmd.list_lines([summary])))
    result = RedriveResult(r.topic, True, 1, 0, 0, 0, 1, 0, f"g.{r.topic}",
                           ((e.original_topic or "?", 1),),
                           reasons=((e.error_message or "", 1),),
                           samples=(RedriveSample(0, r.offset, one_line(r.key),
                                                  e.original_topic, e.error_class,
                                                  e.error_message, "skip",
                                                  e.error_message),),
                           errors=(e.error_message or "",), selection=e.error_class or "")
    out = io.StringIO()
    with redirect_stdout(out):
        dlq_cmd._print_result(result)
    assert_clean(out.getvalue())
    # TUI: topic and record rows, the detail pane, the payload, the redrive dialog
    assert_cells(dead_letters.topic_row(summary).cells[:1])
    assert_cells([dead_letters.TOPIC_COLUMNS[3].render(dead_letters.topic_row(summary).cells[3])])
    row = dead_letters.record_row(dl, selected)
    assert_cells(col.render(v) if col.render else v
                 for col, v in zip(dead_letters.RECORD_COLUMNS, row.cells, strict=True))
    assert_clean(dead_letters.detail(dl), dead_letters.pretty_payload(r.value))
    assert_clean(redrive.plan_text(result), redrive.result_text(result))
    assert_clean(fmt.data(r.value), fmt.data_block(r.key),
                 *(Text(fmt.header_value(h.value)) for h in r.headers))  # as the pane shows it


@SETTINGS
@given(dl=dead_letter(), group_name=names, event_type=st.one_of(st.none(), names),
       key=st.one_of(st.none(), names), trace=st.one_of(st.none(), names),
       note=names, url=st.one_of(st.none(), names))
def test_timelines_through_trace_and_the_timeline_screen(dl, group_name, event_type, key,
                                                         trace, note, url):
    info = DeadLetterInfo.from_envelope(dl.envelope)
    events = (
        TimelineEvent(dl.record.topic, 0, 1, dl.record.timestamp_ms, key, event_type, key,
                      trace, None, consumers={group_name: "pending", "g": "processed"}, stuck=True,
                      trace_url=url, spans=(SpanInfo("s", group_name, note, 1.0),)),
        TimelineEvent(dl.record.topic, 0, 2, None, key, event_type, None, None, None,
                      consumers={group_name: "dead-lettered"}, dead_letter=info),
    )
    t = Timeline(note, events, since_seconds=3600, stuck_after_seconds=60, notes=(note,))
    assert_clean(trace_cmd.render(t))
    assert_clean(timeline.summary(t), *(timeline.event_detail(e) for e in events))
    for e in events:
        row = timeline.event_row(e)
        assert_cells(col.render(v) if col.render else v
                     for col, v in zip(timeline.COLUMNS, row.cells, strict=True))


@SETTINGS
@given(group_name=names, topic=names, state=names, reason=names, client=names,
       error=st.one_of(st.none(), names))
def test_lag_snapshots_through_lag_watch_replay_and_their_screens(group_name, topic, state,
                                                                  reason, client, error):
    parts = (PartitionLag(topic, 0, 1, 5, 4, 2.0, "interpolated", Status.WARN, error=error,
                          status_reason=reason),)
    g = GroupLag(group_name, state, Status.WARN, 4, 2.0, parts,
                 members=(Member(client, client, client, ((topic, 0),)),), error=error,
                 status_reason=reason)
    snapshot = LagSnapshot(1714557600.0, (g,), errors=(reason,))
    # CLI: lag (table, partitions, warnings), watch, replay
    assert_clean(lag_cmd.render(snapshot, partitions=True), "\n".join(lag_cmd.warnings(snapshot)))
    rules = parse_rules_text('[[rule]]\nname = "r"\ngroup = "[\\\\s\\\\S]*"\nmax_lag = 0\n'
                             'severity = "critical"\n')
    result = evaluate(rules.rules, snapshot, now=1714557600.0)
    out = io.StringIO()
    with redirect_stdout(out):
        watch_cmd._print_text(result, True, 1)
        replay_cmd._print_plan(ReplayPlan(group_name, topic, ResetSpec.earliest(), state,
                                          (PartitionReset(0, 1, 0, 0, 5, note=reason),), 0.0),
                               "dry run")
    assert result.firing and out.getvalue()
    assert_clean(out.getvalue(), *(watch_cmd.notice(e) for e in result.events))
    # TUI: overview and group rows, header, alerts rows and banner, replay summary
    row = overview.group_row(g, (1, 2))
    assert_cells(col.render(v) if col.render else v
                 for col, v in zip(overview.COLUMNS, row.cells, strict=True))
    assert_cells(col.render(v) if col.render else v
                 for col, v in zip(group.PARTITION_COLUMNS, group.partition_row(parts[0]).cells,
                                   strict=True))
    assert_clean(group.group_header(g))
    view = AlertsView(1, reason, result.book.states, tuple(result.events), error=error)
    for r in alerts.alert_rows(view):
        assert_cells(col.render(v) if col.render else v
                     for col, v in zip(alerts.COLUMNS, r.cells, strict=True))
    assert_clean(alerts.alerts_summary(view) or "")
    plan = ReplayPlan(group_name, topic, ResetSpec.earliest(), state,
                      (PartitionReset(0, 1, 0, 0, 5, note=reason),), 0.0)
    assert_clean(replay.plan_summary(plan))
