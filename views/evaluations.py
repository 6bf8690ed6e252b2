"""Evaluations (seeds 002 and 003): score a base model, an adapter, a federation or a model on a serving endpoint
on a dataset, read the results example by example, compare runs with the paired significance of each difference,
and export a report."""

import difflib

import pandas as pd
import streamlit as st

from services.datasets import DatasetKind, list_datasets
from services.evaluation import (
    DEFAULT_MAX_NEW_TOKENS,
    FINISHED,
    METRICS,
    REMOTE_METRICS,
    RunConfig,
    cancel_evaluation,
    compare_evaluations,
    evaluation_rows,
    evaluation_state,
    export_evaluation,
    export_rows,
    format_p,
    list_evaluations,
    run_evaluation,
)
from services.federation import list_federations
from services.training import list_adapters, list_base_models
from views.charts import bar_figure
from views.common import attempt, done, latency, model_widget, page_title, paginate, plain, show_error, show_table
from views.endpoints import pick_endpoint_model
from views.session import fragment, may

EMBEDDED = "Embedded base model (SmolLM2-135M-Instruct)"
HERE, ENDPOINT = "This console", "Serving endpoint"
SCORES = ("exact_match", "token_f1", "rouge_l", "preference_accuracy")
LABELS = {
    "exact_match": "Exact match",
    "token_f1": "Token F1",
    "rouge_l": "ROUGE-L",
    "perplexity": "Perplexity",
    "preference_accuracy": "Preference accuracy",
    "latency_p50_ms": "Latency p50",
    "latency_p95_ms": "Latency p95",
    "tokens_per_second": "Tokens/s",
}

page_title("Evaluations")
st.caption(
    "Score a base model, an adapter, a saved federation or a model on a serving endpoint on a dataset with "
    "references (or DPO pairs), then compare runs: every difference comes with its paired significance."
)


def _targets() -> dict[str, str | None]:
    """Shown label -> the target the API takes."""
    choices: dict[str, str | None] = {EMBEDDED: None}
    for info in list_base_models():
        if info.source != "embedded" and info.ready:
            choices[f"Base · {info.id}"] = info.id
    for adapter in list_adapters():
        choices[f"Adapter · {adapter.label}"] = f"{adapter.name}@v{adapter.version}"
    for federation in list_federations():
        choices[f"Federation · {federation.label}"] = federation.id
    return choices


def _run_form(targets: dict[str, str | None], datasets: list, remote: tuple[str, str] | None) -> None:
    """The run's settings; bounds and help of the numbers come from the run's config model."""
    # Only the button starts a run: Enter in a number box (how a value is taken everywhere else) queued a run of a
    # half-filled form, minutes of CPU each.
    with st.form("eval_form", enter_to_submit=False):
        target_label = None if remote else st.selectbox("Target", list(targets), key="eval_target")
        # evaluation sets first (the library lists newest first, so a DPO set imported last led the list)
        ordered = sorted(datasets, key=lambda d: d.kind != DatasetKind.EVALUATION)
        names = {f"{d.name} · {d.type_label} · {d.rows:,} rows": d.name for d in ordered}
        dataset_label = st.selectbox(
            "Dataset",
            list(names),
            key="eval_dataset",
            help="An evaluation set (prompt, reference), an SFT set (the answer is the reference) or a DPO "
            "set (preference accuracy).",
        )
        offered = {m: h for m, h in METRICS.items() if m in REMOTE_METRICS} if remote else METRICS
        metrics = st.multiselect(
            "Metrics",
            list(offered),
            key="eval_metrics_remote" if remote else "eval_metrics",
            placeholder="empty: the defaults for the dataset's kind",
            help="Empty: the defaults for the dataset's kind. " + " ".join(f"{m}: {h}" for m, h in offered.items()),
        )
        left, middle, right = st.columns(3)
        limit = model_widget(
            RunConfig, "limit", "Examples", key="eval_limit", value=None, container=left, placeholder="empty: all"
        )
        batch = model_widget(
            RunConfig,
            "batch_size",
            "Requests at once" if remote else "Batch size",
            key="eval_batch",
            value=8,
            container=middle,
            step=1,
        )
        tokens = model_widget(
            RunConfig,
            "max_new_tokens",
            "Max new tokens",
            key="eval_tokens",
            value=DEFAULT_MAX_NEW_TOKENS,
            container=right,
        )
        if st.form_submit_button("Run evaluation", type="primary", icon=":material/play_arrow:"):
            try:
                run_id = run_evaluation(
                    remote[1] if remote else targets[target_label],
                    names[dataset_label],
                    metrics=metrics or None,
                    limit=int(limit) if limit else None,
                    batch_size=int(batch),
                    max_new_tokens=int(tokens),
                    endpoint=remote[0] if remote else None,
                )
            except Exception as error:  # noqa: BLE001 — shown as a readable error, nothing queued
                show_error(error, "retry_eval_submit")
            else:
                st.session_state["eval_open"] = run_id
                # a toast, not an alert above the tabs: an element that comes and goes before them makes
                # the next rerun draw new tabs, which throws the user back to the first one
                done(f"Queued {run_id}.", rerun="app")


def _score(metric: str, value) -> str:
    if value is None:
        return "—"
    if metric in SCORES:
        return f"{value:.1%}"
    if metric.startswith("latency"):
        return latency(value)
    return f"{value:,.2f}"


# A link from another page (a model's evaluations on Models) opens one run: ?run=eval_...
linked = st.query_params.get("run")
run_tab, results_tab, compare_tab = st.tabs(["Run", "Results", "Compare"], default="Results" if linked else None)

with run_tab:
    targets = attempt(_targets, "retry_eval_targets")
    datasets = attempt(list_datasets, "retry_eval_datasets")
    if may(run_evaluation, why="Running an evaluation") and targets is not None and datasets is not None:
        if not datasets:
            st.info("No datasets yet: import an evaluation set on the Dataset Library page.")
        else:
            where = st.segmented_control(
                "Target runs on",
                [HERE, ENDPOINT],
                default=HERE,
                key="eval_where",
                help="A serving endpoint is an OpenAI-compatible server (vLLM, SGLang, another console) saved on "
                "Settings; its answers are scored the same way. Servers return no log-likelihoods, so perplexity "
                "and preference accuracy are for models in this console.",
            )
            remote = pick_endpoint_model("eval") if where == ENDPOINT else None
            if where != ENDPOINT or remote is not None:
                _run_form(targets, datasets, remote)

    @fragment(run_every=2)
    def active_runs() -> None:
        runs = [r for r in list_evaluations() if r.status not in FINISHED]
        if not runs:
            st.caption("No evaluation is queued or running.")
            return
        for run in runs:
            with st.container(border=True):
                left, right = st.columns([5, 1], vertical_alignment="center")
                left.progress(
                    run.fraction, text=f"{run.id} · {run.label} · {run.status.value} · {run.done}/{run.total}"
                )
                if may(cancel_evaluation) and right.button(
                    "Cancel", key=f"eval_cancel_{run.id}", icon=":material/cancel:"
                ):
                    try:
                        cancel_evaluation(run.id)
                    except Exception as error:  # noqa: BLE001
                        show_error(error, f"retry_eval_cancel_{run.id}")

    st.subheader("Queue")
    active_runs()


RUN_METRICS = {  # column -> metric; a column no listed run has is left out (an SFT run has no preference figure)
    "Exact match": "exact_match",
    "Token F1": "token_f1",
    "ROUGE-L": "rouge_l",
    "Perplexity": "perplexity",
    "Preference": "preference_accuracy",
    "p50 ms": "latency_p50_ms",
}
RUN_COLUMNS = {  # numbers, not bars, and a bounded label: every column fits the page at 1400 px whatever the names
    "Created": st.column_config.DatetimeColumn(format="MM-DD HH:mm", help="When the run was queued (UTC)"),
    "Evaluated": st.column_config.TextColumn(width=200, help="The whole label and the run id: Open run below"),
    "Exact match": st.column_config.NumberColumn(format="percent"),
    "Token F1": st.column_config.NumberColumn(format="%.3f"),
    "ROUGE-L": st.column_config.NumberColumn(format="%.3f"),
    "Perplexity": st.column_config.NumberColumn(format="%.2f"),
    "Preference": st.column_config.NumberColumn(format="percent"),
    "p50 ms": st.column_config.NumberColumn(format="%.0f"),
    "Cost": st.column_config.NumberColumn(format="$%.4f", help="USD: the run's wall time at the machine's price"),
}


def runs_table(runs) -> None:
    """The one table of runs, on Results and Compare alike."""
    metrics = {
        column: [r.metrics.get(metric) for r in runs]
        for column, metric in RUN_METRICS.items()
        if any(r.metrics.get(metric) is not None for r in runs)
    }
    frame = pd.DataFrame(
        {
            "Created": [r.created for r in runs],
            "Evaluated": [r.label for r in runs],
            "Status": [r.status.value for r in runs],
            "Examples": [r.total for r in runs],
            **metrics,
            "Cost": [r.cost for r in runs],
        }
    )
    show_table(frame, hide_index=True, column_config=RUN_COLUMNS)


def _diff(reference: str, prediction: str) -> str:
    """A token diff, one token per line ('-' only in the reference, '+' only in the prediction)."""
    return "\n".join(
        line
        for line in difflib.unified_diff(
            reference.split(), prediction.split(), "reference", "prediction", lineterm="", n=100
        )
    )


@st.fragment(run_every=3)
def run_status(run_id: str) -> None:
    run = evaluation_state(run_id)
    if run.status in FINISHED:
        if st.session_state.get("eval_status_seen") != (run_id, run.status.value):
            st.session_state["eval_status_seen"] = (run_id, run.status.value)
            st.rerun(scope="app")
        return
    st.progress(run.fraction, text=f"{run.status.value}: {run.done} of {run.total} examples")


def show_run(run_id: str) -> None:
    run = evaluation_state(run_id)
    st.subheader(run.label)
    st.caption(
        f"{run.id} · {run.status.value} · {run.done} of {run.total} examples · {run.seconds:.1f} s"
        + (f" · cost ${run.cost:.4f}" if run.cost is not None else "")
        + (f" · {len(run.skipped)} records skipped (nothing to judge)" if run.skipped else "")
    )
    if run.status not in FINISHED:
        run_status(run_id)
    if run.error:
        st.error(plain(run.error), icon=":material/error:")
    shown = [m for m in LABELS if m in run.metrics]
    if shown:
        cards = st.columns(len(shown))
        for card, metric in zip(cards, shown, strict=True):
            card.metric(LABELS[metric], _score(metric, run.metrics[metric]))
    fields = run.metrics.get("field_accuracy")
    if fields:
        frame = pd.DataFrame(
            [
                {"RMIS field": f, "Accuracy": v["accuracy"], "Label": f"{v['accuracy']:.0%} of {v['examples']}"}
                for f, v in fields.items()
            ]
        )
        st.plotly_chart(
            bar_figure(frame, "RMIS field", "Accuracy", y_range=(0, 1), title="Accuracy per RMIS field", text="Label"),
            key=f"eval_fields_{run_id}",
        )
    rows = evaluation_rows(run_id)
    if not rows:
        return
    table = pd.DataFrame(rows)
    if "exact_match" in table:
        table["pass"] = table["exact_match"]
    elif "preferred" in table:
        table["pass"] = table["preferred"]
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    search = left.text_input("Search prompts, references and predictions", key="eval_search")
    failures = right.toggle("Failures only", key="eval_failures")
    if search:
        needle = search.casefold()
        text = table.drop(columns=[c for c in table.columns if table[c].dtype != object]).astype(str)
        table = table[text.apply(lambda row: needle in " ".join(row).casefold(), axis=1)]
    if failures and "pass" in table:
        table = table[~table["pass"].astype(bool)]
    columns = [
        c
        for c in (
            "index",
            "pass",
            "prompt",
            "reference",
            "prediction",
            "token_f1",
            "rouge_l",
            "field",
            "chosen_logprob",
            "rejected_logprob",
            "latency_ms",
        )
        if c in table
    ]
    page = paginate(table[columns].to_dict("records"), key=f"eval_rows_page_{run_id}")
    show_table(
        pd.DataFrame(page, columns=columns),
        hide_index=True,
        key="eval_rows_table",
        column_config={"pass": st.column_config.CheckboxColumn("Pass")},
    )
    if "prediction" in table and len(table):
        index = st.selectbox("Diff of example", table["index"].tolist(), key="eval_diff_index")
        row = table[table["index"] == index].iloc[0]
        st.code(_diff(str(row.get("reference") or ""), str(row.get("prediction") or "")) or "(identical)", "diff")
    with st.container(horizontal=True):
        st.download_button(
            "Report (Markdown)", export_evaluation([run_id], "markdown"), f"{run_id}.md", icon=":material/download:"
        )
        st.download_button(
            "Report (HTML)", export_evaluation([run_id], "html"), f"{run_id}.html", icon=":material/download:"
        )
        st.download_button("Rows (CSV)", export_rows(run_id, "csv"), f"{run_id}.csv", icon=":material/download:")
        st.download_button("Rows (JSONL)", export_rows(run_id, "jsonl"), f"{run_id}.jsonl", icon=":material/download:")


with results_tab:
    runs = attempt(list_evaluations, "retry_eval_list")
    if runs is not None and not runs:
        st.info("No evaluations yet. Run one from the Run tab.")
    elif runs:
        left, right = st.columns([3, 1])
        needle = left.text_input("Filter by target, dataset or run id", key="eval_filter").casefold()
        statuses = right.multiselect("Status", sorted({r.status.value for r in runs}), key="eval_status_filter")
        chosen = [
            r
            for r in runs
            if (not needle or needle in f"{r.id} {r.label}".casefold()) and (not statuses or r.status.value in statuses)
        ]
        runs_table(paginate(chosen, key="eval_list_page"))
        ids = [r.id for r in runs]
        if linked in ids and st.session_state.get("eval_linked") != linked:
            st.session_state["eval_linked"] = st.session_state["eval_open"] = linked  # once per link
        if st.session_state.get("eval_open") not in ids:
            st.session_state["eval_open"] = ids[0]
        opened = st.session_state["eval_open"]
        # The open run lives in a plain entry and the picker's key names it (the form-state rule in views.common):
        # a Queue fragment run sends back the picker's old value, which would reopen the previous run over a run
        # just queued. No status in the label: the run's caption, redrawn every time, says it.
        labels = {r.id: f"{r.id} · {r.label}" for r in runs}
        selected = st.selectbox(
            "Open run", ids, index=ids.index(opened), format_func=labels.get, key=f"eval_selected[{opened}]"
        )
        st.session_state["eval_open"] = selected
        with st.container(border=True):
            attempt(lambda: show_run(selected), "retry_eval_run")


with compare_tab:
    runs = attempt(list_evaluations, "retry_eval_list_compare")
    completed = {r.id: r for r in runs or [] if r.status == "completed"}
    if len(completed) < 2:
        st.info("Comparing needs at least two completed evaluations on the same dataset.")
    else:
        labels = {r.id: f"{r.id} · {r.label}" for r in completed.values()}
        picked = st.multiselect(
            "Runs to compare (the first is the baseline)",
            list(labels),
            format_func=labels.get,
            key="eval_compare",
            max_selections=6,
        )
        if len(picked) >= 2:
            comparison = attempt(lambda: compare_evaluations(picked), "retry_eval_compare")
            if comparison is not None:
                long = [
                    {"run": row["target"] + " · " + row["run"][-6:], "metric": LABELS[m], "value": row[m]}
                    for row in comparison.table
                    for m in SCORES
                    if row.get(m) is not None
                ]
                st.plotly_chart(
                    bar_figure(pd.DataFrame(long), "metric", "value", by="run", y_range=(0, 1)),
                    key="eval_compare_chart",
                )
                runs_table([completed[i] for i in picked])
                st.markdown("**Significance against the baseline**")
                for test in comparison.tests:
                    with st.container(border=True):
                        st.text(f"{test.run} vs {test.baseline}")
                        if test.mcnemar is not None:
                            st.metric(
                                "Exact match (McNemar, exact)",
                                format_p(test.mcnemar.p_value),
                                help=f"{test.mcnemar.b} examples passed only in {test.run}, "
                                f"{test.mcnemar.c} only in the baseline.",
                            )
                        if test.preference_mcnemar is not None:
                            st.metric("Preference (McNemar)", format_p(test.preference_mcnemar.p_value))
                        for metric, interval in test.bootstrap.items():
                            st.text(
                                f"{LABELS[metric]}: {interval.mean_difference:+.3f}, 95% interval "
                                f"[{interval.low:+.3f}, {interval.high:+.3f}]"
                                + (" (excludes 0)" if interval.excludes_zero else " (includes 0)")
                            )
                st.markdown(f"**Examples whose outcome changed** ({len(comparison.changed)})")
                if comparison.changed:
                    show_table(
                        pd.DataFrame(
                            [
                                {
                                    "index": item["index"],
                                    "prompt": item["prompt"],
                                    "reference": item["reference"],
                                    **{
                                        f"{run_id[-6:]} {column}": item[run_id][key]
                                        for run_id in picked
                                        for column, key in (("pass", "pass"), ("answer", "prediction"))
                                    },
                                }
                                for item in comparison.changed
                            ]
                        ),
                        hide_index=True,
                    )
                with st.container(horizontal=True):
                    st.download_button(
                        "Comparison (Markdown)",
                        export_evaluation(picked, "markdown"),
                        "comparison.md",
                        icon=":material/download:",
                    )
                    st.download_button(
                        "Comparison (HTML)",
                        export_evaluation(picked, "html"),
                        "comparison.html",
                        icon=":material/download:",
                    )
