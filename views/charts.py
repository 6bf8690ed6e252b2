"""The pages' charts, built from plotly's graph objects.

plotly.express reshapes its data frame on every call: about 0.15 s a chart (0.6 s the first time in a process) on
this 2-core machine, which System Health paid twice every 5 s. A Scatter or a Bar from the columns costs a few
milliseconds and draws the same chart.
"""

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go


def line_figure(
    frame: pd.DataFrame,
    x: str,
    y: str | Sequence[str],
    *,
    title: str,
    by: str | None = None,
    y_range: tuple[float, float] | None = None,
    markers: bool = False,
) -> go.Figure:
    """One line per column of `y`, or per value of column `by` (one `y` column then)."""
    mode = "lines+markers" if markers else "lines"
    if by is not None:
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
