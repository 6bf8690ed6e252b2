"""Exports of runs: a Markdown report, a self-contained HTML report (inline SVG charts, no script, no external
file), and the per-example rows as CSV or JSONL. Every user-provided text is escaped; nothing loads anything."""

import csv
import html
import io
import json
from collections.abc import Sequence
from typing import Any

from evaluation.compare import Comparison
from evaluation.runs import RunState

SCORES = (
    "exact_match",
    "token_f1",
    "rouge_l",
    "preference_accuracy",
    "plan_pass",
    "plan_channel",
    "plan_split",
    "plan_uplift",
)
COLUMNS = (
    "index",
    "prompt",
    "reference",
    "prediction",
    "exact_match",
    "token_f1",
    "rouge_l",
    "field",
    "reference_logprob",
    "reference_tokens",
    "chosen",
    "rejected",
    "chosen_logprob",
    "rejected_logprob",
    "preferred",
    "tokens",
    "latency_ms",
)


def _value(metric: str, value: Any) -> str:
    if value is None:
        return "—"
    if metric in SCORES:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _metric_rows(run: RunState) -> list[tuple[str, str]]:
    return [(k, _value(k, v)) for k, v in run.metrics.items() if k != "field_accuracy"]


def _md(text: Any) -> str:
    """Text in a Markdown table cell: pipes and newlines escaped, markup characters neutralised."""
    value = str(text if text is not None else "")
    for char in ("\\", "|", "`", "*", "_", "[", "]", "<", ">", "#"):
        value = value.replace(char, "\\" + char)
    return value.replace("\n", " ")


def markdown_report(runs: Sequence[RunState], comparison: Comparison | None = None) -> str:
    lines = ["# Evaluation report", ""]
    for run in runs:
        lines += [
            f"## {_md(run.label)}",
            "",
            f"Run `{run.id}` · {run.status.value} · {run.done} of {run.total} examples · {run.seconds:.1f} s"
            + (f" · ${run.cost:.4f}" if run.cost is not None else ""),
            "",
            "| metric | value |",
            "| --- | --- |",
            *(f"| {name} | {value} |" for name, value in _metric_rows(run)),
            "",
        ]
        fields = run.metrics.get("field_accuracy")
        if fields:
            lines += ["| RMIS field | accuracy | examples |", "| --- | --- | --- |"]
            lines += [f"| {_md(f)} | {v['accuracy']:.1%} | {v['examples']} |" for f, v in fields.items()]
            lines.append("")
    if comparison is not None:
        lines += ["## Comparison", "", "| against | test |", "| --- | --- |"]
        lines += [f"| {t.run} vs {t.baseline} | {_md(t.summary)} |" for t in comparison.tests]
        lines += ["", f"{len(comparison.changed)} examples changed outcome.", ""]
    return "\n".join(lines)


def _bars(runs: Sequence[RunState]) -> str:
    """Grouped horizontal bars of the score metrics, as inline SVG."""
    metrics = [m for m in SCORES if any(m in r.metrics for r in runs)]
    palette = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
    height = 22
    rows = len(metrics) * (len(runs) * height + 14)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="{rows + 10}" role="img">']
    y = 5
    for metric in metrics:
        parts.append(f'<text x="0" y="{y + 12}" font-size="12" font-weight="bold">{metric}</text>')
        y += 14
        for index, run in enumerate(runs):
            value = float(run.metrics.get(metric) or 0.0)
            width = max(1, int(380 * value))
            colour = palette[index % len(palette)]
            parts.append(f'<rect x="120" y="{y}" width="{width}" height="{height - 6}" fill="{colour}"/>')
            parts.append(f'<text x="0" y="{y + 12}" font-size="11">{html.escape(run.id[-6:])}</text>')
            parts.append(f'<text x="{126 + width}" y="{y + 12}" font-size="11">{value:.1%}</text>')
            y += height
    parts.append("</svg>")
    return "".join(parts)


def html_report(runs: Sequence[RunState], comparison: Comparison | None = None) -> str:
    esc = html.escape
    body = [f"<h1>Evaluation report</h1>{_bars(runs)}"]
    for run in runs:
        metric_rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in _metric_rows(run))
        body.append(
            f"<h2>{esc(run.label)}</h2><p><code>{esc(run.id)}</code> · {esc(run.status.value)} · "
            f"{run.done} of {run.total} examples · {run.seconds:.1f} s</p>"
            f"<table><tr><th>metric</th><th>value</th></tr>{metric_rows}</table>"
        )
        fields = run.metrics.get("field_accuracy") or {}
        if fields:
            cells = "".join(
                f"<tr><td>{esc(f)}</td><td>{v['accuracy']:.1%}</td><td>{v['examples']}</td></tr>"
                for f, v in fields.items()
            )
            body.append(f"<table><tr><th>RMIS field</th><th>accuracy</th><th>examples</th></tr>{cells}</table>")
    if comparison is not None:
        tests = "".join(
            f"<tr><td>{esc(t.run)} vs {esc(t.baseline)}</td><td>{esc(t.summary)}</td></tr>" for t in comparison.tests
        )
        body.append(f"<h2>Comparison</h2><table><tr><th>against</th><th>test</th></tr>{tests}</table>")
        body.append(f"<p>{len(comparison.changed)} examples changed outcome.</p>")
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>Evaluation report</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def rows_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = [c for c in COLUMNS if any(c in row for row in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _csv_cell(row.get(c)) for c in columns})
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    """Spreadsheet formula injection: a text cell starting with = + - @ is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def rows_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
