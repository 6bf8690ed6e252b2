"""The pages' charts, built from plotly's graph objects.

plotly.express reshapes its data frame on every call: about 0.15 s a chart (0.6 s the first time in a process) on
this 2-core machine, which System Health paid twice every 5 s. A Scatter or a Bar from the columns costs a few
milliseconds and draws the same chart.
"""

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

# A training loss is drawn raw and smoothed, as TensorBoard and W&B draw it: a batch's loss depends on what it holds
# (batches grouped by length hold one field of a retailer set each, and the fields' losses differ several-fold), so
# the raw line zigzags around the trend. The quick demo on the demo Amazon set: raw steps move 0.36 on average, this
# EMA 0.10, falling from 1.5 to 0.4 over the 30 steps.
LOSS_SMOOTHING = 0.8


def line_figure(
    frame: pd.DataFrame,
    x: str,
    y: str | Sequence[str],
    *,
    title: str,
    by: str | None = None,
    y_range: tuple[float, float] | None = None,
    markers: bool = False,
    smooth: bool = False,
) -> go.Figure:
    """One line per column of `y`, or per value of column `by` (one `y` column then); `smooth` draws each `by` line
    raw and smoothed (`smoothed_traces`)."""
    mode = "lines+markers" if markers else "lines"
    if by is not None and smooth:
        parts = frame.groupby(by, sort=False)
        palette = qualitative.Plotly
        traces = [
            trace
            for index, (name, part) in enumerate(parts)
            for trace in smoothed_traces(part[x], part[y], str(name), palette[index % len(palette)])
        ]
    elif by is not None:
        traces = [
            go.Scatter(x=part[x], y=part[y], name=str(name), mode=mode) for name, part in frame.groupby(by, sort=False)
        ]
    else:
        columns = [y] if isinstance(y, str) else list(y)
        traces = [go.Scatter(x=frame[x], y=frame[column], name=column, mode=mode) for column in columns]
    return _layout(go.Figure(traces), title, x, y if isinstance(y, str) else None, y_range, by)


def bar_figure(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    title: str | None = None,
    by: str | None = None,
    y_range: tuple[float, float] | None = None,
    color: str | None = None,
    text: str | None = None,
) -> go.Figure:
    """Bars of `y` over `x`; with `by`, one group of bars per value of that column. With `text`, that column is
    written above each bar, so a bar of height 0 still says what it is."""
    if by is not None:
        traces = [go.Bar(x=part[x], y=part[y], name=str(name)) for name, part in frame.groupby(by, sort=False)]
    else:
        labels = {} if text is None else {"text": frame[text], "textposition": "outside", "cliponaxis": False}
        traces = [go.Bar(x=frame[x], y=frame[y], marker_color=color, **labels)]
    figure = _layout(go.Figure(traces), title, x, y, y_range, by)
    figure.update_layout(barmode="group")
    return figure


def _layout(
    figure: go.Figure,
    title: str | None,
    x: str,
    y: str | None,
    y_range: tuple[float, float] | None,
    legend: str | None,
) -> go.Figure:
    # Traces by a column always say whose they are: Plotly draws a legend from two traces only, so a chart of one job
    # beside a chosen job with no points showed one unnamed line (None keeps Plotly's rule).
    showlegend = True if legend is not None else None
    figure.update_layout(title=title, xaxis_title=x, yaxis_title=y, legend_title=legend, showlegend=showlegend)
    if y_range is not None:
        figure.update_yaxes(range=list(y_range))
    return figure


def smoothed(values: pd.Series, weight: float = LOSS_SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average divided by its weights' sum so far (pandas' adjusted
    EWM), so the first points are not pulled towards 0."""
    return values.ewm(alpha=1 - weight, adjust=True).mean().tolist()


def smoothed_traces(x: pd.Series, y: pd.Series, name: str, color: str) -> list[go.Scatter]:
    """A noisy series as a faint raw line under its smoothed line, one legend entry for both."""
    return [
        go.Scatter(
            x=x, y=y, name=name, legendgroup=name, showlegend=False, opacity=0.3, line=dict(color=color, width=1)
        ),
        go.Scatter(
            x=x,
            y=smoothed(y),
            name=name,
            legendgroup=name,
            line=dict(color=color, width=2.5),
            hovertemplate=f"smoothed ({LOSS_SMOOTHING})" + ": %{y:.4f}<extra>%{fullData.name}</extra>",
        ),
    ]
