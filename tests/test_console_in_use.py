"""Issue 11 items that need no browser; each test is named after its item (the browser ones are in tests/browser)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Emoji and pictographs: Debian's headless Chromium has no font for them, so each one is an empty box there.
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u2712\u2714-\u2716\u2718-\u27bf\u2b00-\u2bff\ufe0f]")


def test_item_14_navigation_and_pages_use_material_icons_not_emoji() -> None:
    """Navigation, titles, buttons and messages use `:material/...:` icons; ✓ and ✗ (plain text symbols) stay."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in [ROOT / "app.py", ROOT / "registry" / "mappings.py", *sorted((ROOT / "views").glob("*.py"))]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if EMOJI.search(line)
    ]
    assert not found, "emoji in the UI:\n" + "\n".join(found)


def test_item_5_page_urls_are_their_file_names() -> None:
    """Streamlit also reads the views/ folder and expects each page's file name as its URL: a url_path that differs
    (url_path="training" for views/training_jobs.py) made a first visit show "Page not found" over the page."""
    import ast

    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    pages = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page"]
    assert len(pages) >= 8
    for call in pages:
        script = Path(ast.literal_eval(call.args[0])).stem
        paths = [ast.literal_eval(k.value) for k in call.keywords if k.arg == "url_path"]
        assert paths in ([], [script]), f"{ast.unparse(call)}: leave url_path out or make it {script!r}"


def navigation_icons() -> dict[str, str]:
    """Each page file's navigation icon, read from app.py's st.Page calls (the one list of them)."""
    import ast

    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    pages = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Page"]
    return {
        ast.literal_eval(call.args[0]): ast.literal_eval(next(k.value for k in call.keywords if k.arg == "icon"))
        for call in pages
    }


def test_walk_every_page_title_is_drawn_with_its_navigation_icon() -> None:
    """Some titles had a Material icon (Models, Publish, Settings; Train Model another than its navigation's) and the
    others none (the closing walk of issue 11). Every page draws its title through page_title, which takes the icon
    of the page navigation runs; no page writes an icon, or calls st.title, itself."""
    import ast

    for script in navigation_icons():
        tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        titles = [c for c in calls if ast.unparse(c.func) in ("st.title", "page_title")]
        assert [ast.unparse(c.func) for c in titles] == ["page_title"], f"{script}: {[ast.unparse(c) for c in titles]}"
        text = ast.literal_eval(titles[0].args[0]) if isinstance(titles[0].args[0], ast.Constant) else ""
        assert ":material/" not in text, f"{script}: the icon comes from the navigation"


def test_walk_pages_run_through_the_navigation_show_its_icon_in_their_title(registry) -> None:
    from streamlit.testing.v1 import AppTest

    icons = navigation_icons()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert at.title[0].value.startswith(icons["views/home.py"] + " "), at.title[0].value
    for script in ("views/training_metrics.py", "views/train_wizard.py", "views/settings.py"):
        at.switch_page(script).run()
        assert not at.exception, script
        assert at.title[0].value.startswith(icons[script] + " "), (script, at.title[0].value)


def test_item_9_error_text_is_shown_literally() -> None:
    """`plain` escapes what Markdown and Streamlit's directives would read, so `__init__.py` is not bold "init.py",
    a link is not a link and `:red[...]` is not coloured; unescaping gives back the exact text."""
    from views.common import plain

    text = "Failed in __init__.py: see [docs](http://x) or <img src=x> :red[alert] $x$ *y* `z` #1 | ~a~"
    escaped = plain(text)
    assert re.sub(r"\\(.)", r"\1", escaped) == text
    assert not re.search(r"(?<!\\)[_\[\]<>:$*`#|~]", escaped), escaped


def test_item_15_schema_mappings_generates_an_sft_dataset_and_its_eval_split(registry) -> None:
    """Schema Mappings → Training data: pick the mapping, a raw source and a held-out share, press the button; the
    library gets the SFT dataset and its evaluation split, with about that share held out."""
    from streamlit.testing.v1 import AppTest

    from services import datasets, mappings

    mappings.install_demo_data()
    at = AppTest.from_file(str(ROOT / "views" / "schema_mappings.py"), default_timeout=120).run()
    assert not at.exception
    at.selectbox(key="mapping_retailer").select("Walmart").run()
    at.session_state["mapping_tab"] = "Training data"  # a click on the tab (AppTest cannot click one)
    at.run()
    assert at.selectbox(key="generate_source_walmart").value == mappings.get_mapping("Walmart").source_id
    at.slider(key="generate_share_walmart").set_value(0.3).run()
    at.button(key="generate_dataset").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("retailer_walmart_sft v1" in t.value.replace("\\", "") for t in at.toast)
    train = datasets.get_dataset("retailer_walmart_sft")
    held = datasets.get_dataset("retailer_walmart_eval")
    assert held.kind.value == "evaluation" and train.rows > 0
    # Enum values are never held out, so the share of all examples is somewhat under 30 %.
    assert 0.15 < held.rows / (held.rows + train.rows) < 0.35


def test_walk_regenerating_an_unchanged_dataset_says_it_is_unchanged(registry) -> None:
    """Generating Walmart's training set again from the same mapping and source wrote nothing new (same content), yet
    the toast read "Dataset retailer_walmart_sft v1: 759 training examples", as if it had been created (the closing
    walk of issue 11). The import reports that it found the latest version's content, and the toast says so."""
    from streamlit.testing.v1 import AppTest

    from services import datasets, mappings

    mappings.install_demo_data()
    at = AppTest.from_file(str(ROOT / "views" / "schema_mappings.py"), default_timeout=120).run()
    at.selectbox(key="mapping_retailer").select("Walmart").run()
    at.session_state["mapping_tab"] = "Training data"  # a click on the tab (AppTest cannot click one)
    at.run()
    at.button(key="generate_dataset").click().run()
    first = [t.value.replace("\\", "") for t in at.toast]
    assert any("retailer_walmart_sft v1" in t and "unchanged" not in t for t in first), first
    at.button(key="generate_dataset").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    again = [t.value.replace("\\", "") for t in at.toast]
    assert any("retailer_walmart_sft v1 is unchanged" in t and "retailer_walmart_eval v1" in t for t in again), again
    assert [v.version for v in datasets.get_dataset("retailer_walmart_sft").versions] == [1]


def test_item_15_a_source_without_the_mappings_columns_is_refused(registry) -> None:
    from registry.errors import ConsoleError
    from services import datasets, mappings

    mappings.install_demo_data()
    other = next(s.id for s in mappings.list_sources() if s.id != mappings.get_mapping("Amazon").source_id)
    with pytest.raises(ConsoleError, match="Amazon mapping can map"):
        mappings.generate_training_data("Amazon", other, 0.2)
    assert "retailer_amazon_sft" not in {d.name for d in datasets.list_datasets()}


def test_item_13_listing_base_models_for_the_form_imports_no_torch(tmp_path) -> None:
    """The Training Jobs form lists base models before it draws: that imported transformers and torch (the first
    render after a restart waited for them). Listing reads config.json and safetensors headers only."""
    import os
    import subprocess
    import sys

    from tiny_model import build_tiny_model

    build_tiny_model(tmp_path / "models" / "tiny-llama")
    code = (
        "import sys; from services.training import list_base_models; "
        "ids = [m.id for m in list_base_models()]; "
        "print(ids, sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))"
    )
    env = {**os.environ, "RMN_LORA_HOME": str(tmp_path / "home"), "RMN_LORA_MODELS": str(tmp_path / "models")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip().endswith("[]"), result.stdout
    assert "tiny-llama" in result.stdout


def fresh_python(code: str, home: Path) -> str:
    """Run `code` in a new interpreter (nothing imported yet) on the registry `home`; what it printed."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "RMN_LORA_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_frame_first_only_the_training_pages_warm_the_training_stack_after_drawing(tmp_path) -> None:
    """The first Start Training of a server imported torch, transformers, PEFT and TRL in its preflight (minutes on
    a busy machine, with no spinner). The Training Jobs page now draws first and, once the user has stayed on it a
    few seconds, starts importing them in a background thread, so the stack is loaded by the time a user submits.
    Home does not, nor a first draw of Training Jobs: while the stack imports, every other page of the server
    renders more slowly (the thread holds the GIL), so a user who never trains, or only passes through, must not pay
    for it."""
    code = (
        "import sys, threading\n"
        "from streamlit.testing.v1 import AppTest\n"
        "from services import runtime\n"
        "def warming():\n"
        "    return any(t.name == 'training-stack-warmup' for t in threading.enumerate()) or 'trl' in sys.modules\n"
        "at = AppTest.from_file('app.py', default_timeout=300).run()\n"
        "assert not at.exception, at.exception\n"
        "assert not runtime.training_stack_ready() and not warming(), 'Home started the warm-up'\n"
        "at.switch_page('views/training_jobs.py').run()\n"
        "assert not at.exception, at.exception\n"
        "assert not warming(), 'the first draw of Training Jobs started the warm-up'\n"
        "page, opened = at.session_state['page_opened']\n"
        "at.session_state['page_opened'] = (page, opened - 5)  # the user stayed on it 5 s: the next run warms\n"
        "at.run()\n"
        "assert not at.exception, at.exception\n"
        "assert runtime.wait_for_training_stack(900), 'the warm-up did not finish'\n"
        "import gc\n"
        "print('ready', runtime.training_stack_ready(), sorted(m for m in ('torch', 'transformers', 'trl', 'peft') "
        "if m in sys.modules), 'walked by a full collection:', len(gc.get_objects()) < gc.get_freeze_count() / 20)\n"
    )
    printed = fresh_python(code, tmp_path / "home")
    # the stack's objects are frozen too (see the next test): a full collection after each run walked all of them
    assert printed.endswith("ready True ['peft', 'torch', 'transformers', 'trl'] walked by a full collection: True"), (
        printed
    )


def test_frame_first_the_server_imports_the_pages_libraries_when_it_starts(tmp_path) -> None:
    """Every page imports pandas (and most plotly) before drawing its title: seconds on a busy machine, paid by the
    first page a user opened. The server's start-up (serve.py, what `make run` serves) now imports them in the
    background before any browser connects."""
    code = (
        "import asyncio, sys\n"
        "import serve\n"
        "from services import runtime\n"
        "libraries = ('pandas', 'pyarrow', 'services.monitoring', 'services.mappings')\n"
        "assert not [m for m in libraries if m in sys.modules], 'imported before the server started'\n"
        "async def start():\n"
        "    async with serve.start_up(serve.app):\n"
        "        runtime.warm_page_libraries().join(600)\n"
        "asyncio.run(start())\n"
        "print('imported', [m for m in libraries if m in sys.modules], 'torch' in sys.modules)\n"
    )
    printed = fresh_python(code, tmp_path / "home")
    # every library and service module, never the training stack (item 1: it imports in one place only)
    assert printed.endswith("imported ['pandas', 'pyarrow', 'services.monitoring', 'services.mappings'] False"), printed


def test_frame_first_the_collection_after_each_run_skips_the_libraries_imported_at_start(tmp_path) -> None:
    """Streamlit collects garbage in full after every script run and every fragment run, and a full collection walks
    every object the process holds: with the training stack imported that cost 0.27-0.38 s of CPU (1-2.6 s of wall
    time at load 12) at the end of each page view and of each fragment tick, GIL held (a profiled server, 23:46 on
    6 Dec). The warm-ups freeze what they imported, so a collection walks only what the sessions made since."""
    code = (
        "import asyncio, gc\n"
        "import serve\n"
        "from services import runtime\n"
        "async def start():\n"
        "    async with serve.start_up(serve.app):\n"
        "        runtime.warm_page_libraries().join(600)\n"
        "asyncio.run(start())\n"
        "print('walked', len(gc.get_objects()), 'frozen', gc.get_freeze_count())\n"
    )
    words = fresh_python(code, tmp_path / "home").split()
    walked, frozen = int(words[-3]), int(words[-1])
    assert frozen > 20 * walked, (walked, frozen)


def test_frame_first_the_server_answers_on_a_kept_alive_connection_without_waiting_for_an_ack(tmp_path) -> None:
    """Streamlit binds its listening socket without naming the protocol (protocol 0) and asyncio sets TCP_NODELAY
    only on sockets whose protocol is TCP, so Nagle's algorithm held every response after the first on a kept-alive
    connection until the browser's delayed ACK: 43-49 ms at least per request (the 60 script files of a first
    visit, the app's messages), 2.5-6 ms with it off (7 Dec, load 12). The server's start-up turns it off on the
    listening socket, which every accepted connection inherits."""
    code = (
        "import asyncio, socket\n"
        "listener = socket.socket(socket.AF_INET)  # as Streamlit's server binds it: protocol 0\n"
        "listener.bind(('127.0.0.1', 0))\n"
        "listener.listen(8)\n"
        "import serve\n"
        "async def start():\n"
        "    async with serve.start_up(serve.app):\n"
        "        pass\n"
        "asyncio.run(start())\n"
        "client = socket.create_connection(listener.getsockname())\n"
        "accepted, _ = listener.accept()\n"
        "print('nodelay', accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))\n"
    )
    assert fresh_python(code, tmp_path / "home").endswith("nodelay 1")


def test_frame_first_page_scripts_compile_without_magic_which_no_page_uses(tmp_path) -> None:
    """Streamlit's magic rewrites a page script's syntax tree (to show its bare expressions) each time it compiles
    it, and it drops its compiled scripts whenever the last session disconnects: a returning user's first visit of
    each page paid 10-35 ms of CPU for app.py and the page (40-60 % of a light page's run; old and new servers
    alternated, 7 Dec). The console turns magic off; no page script has a bare expression it would have shown."""
    import ast

    assert (
        fresh_python("from streamlit import config\nprint(config.get_option('runner.magicEnabled'))", tmp_path)[-5:]
        == "False"
    )
    scripts = [ROOT / "app.py", *sorted((ROOT / "views").glob("*.py"))]
    shown = []
    for script in scripts:
        for node in ast.walk(ast.parse(script.read_text())):
            body = getattr(node, "body", None)  # a statement list (a lambda's or an IfExp's body is one expression)
            for index, statement in enumerate(body if isinstance(body, list) else []):
                if not isinstance(statement, ast.Expr) or isinstance(statement.value, (ast.Call, ast.Await)):
                    continue
                if not (index == 0 and isinstance(statement.value, ast.Constant)):  # a docstring is not shown
                    shown.append(f"{script.name}:{statement.lineno}")
    assert shown == []


def test_new_user_an_empty_training_jobs_page_loads_the_demo_data(registry) -> None:
    """A new user's Training Jobs page said "run `make run`" (a shell command) and nothing else; its button now
    loads the demo datasets, and the form appears with them."""
    from streamlit.testing.v1 import AppTest

    from services import datasets

    at = AppTest.from_file(str(ROOT / "views" / "training_jobs.py"), default_timeout=300).run()
    assert not at.exception and not datasets.list_datasets()
    at.button(key="jobs_load_demo").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    names = {d.name for d in datasets.list_datasets()}
    assert {"retailer_amazon_sft", "task_planning_sft"} <= names
    assert any(t.value.replace("\\", "").startswith(f"Loaded the demo data: {len(names)} datasets") for t in at.toast)
    assert at.button(key="start_training")


def test_item_12_lineage_and_final_metrics_read_as_a_table() -> None:
    """Lineage and a job's final metrics were a collapsed JSON tree ("{...}"); as a table, an unset value read
    "null" and a float sixteen digits. One values table: em dash, four significant digits, lists as compact text."""
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        from views.common import values_table

        values_table({"eval_dataset": None, "learning_rate": 0.000123456789, "target_modules": ["q_proj", "v_proj"]})

    at = AppTest.from_function(page, default_timeout=120).run()  # imports the views: slow on a busy machine
    assert not at.exception
    shown = at.dataframe[0].value
    assert list(shown["Value"]) == ["—", "0.0001235", '["q_proj", "v_proj"]']


def test_cosmetics_every_table_shows_a_missing_cell_as_an_em_dash(registry) -> None:
    """A number missing in some rows (a job's final loss, a metric one run has) showed Streamlit's faded "None", which
    reads like a value. Every table goes through `show_table` (an em dash, as the console's text cells have); a
    page calling st.dataframe itself would bring the "None" back."""
    from streamlit.testing.v1 import AppTest

    from services.demo import seed_demo

    direct = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "views").glob("*.py"))
        if path.name != "common.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ".dataframe(" in line
    ]
    assert not direct, f"tables drawn without show_table: {direct}"
    seed_demo()
    for script in ("app.py", "views/dataset_library.py", "views/settings.py"):  # app.py draws Home
        at = AppTest.from_file(str(ROOT / script), default_timeout=300).run()
        assert not at.exception, at.exception
        assert at.dataframe and {table.proto.placeholder for table in at.dataframe} == {"—"}, script


def test_item_9_no_page_passes_a_raw_value_to_an_element_that_reads_markdown() -> None:
    """Alerts, toasts, captions and Markdown read their text as Markdown: a value (an error, a run's failure, a file's
    problem) reaches them through `plain` or `show_error`, never as it is. A run's error was shown raw on Evaluations
    and a package's on Models (found on the closing walk)."""
    import ast

    readers = {"error", "warning", "info", "success", "toast", "caption", "markdown"}
    raw = []
    for script in [ROOT / "app.py", *sorted((ROOT / "views").glob("*.py"))]:
        for node in ast.walk(ast.parse(script.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            if node.func.attr not in readers or not isinstance(node.func.value, ast.Name):
                continue
            first = node.args[0]
            # our own text: a literal (or a choice of literals), or an entry of one of our constant tables
            parts = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            literal = all(isinstance(part, (ast.Constant, ast.JoinedStr, ast.BinOp)) for part in parts)
            table = isinstance(first, ast.Subscript) and getattr(first.value, "id", "").isupper()
            escaped = isinstance(first, ast.Call) and getattr(first.func, "id", None) == "plain"
            if not (literal or table or escaped):
                raw.append(f"{script.name}:{node.lineno} {ast.unparse(node)[:80]}")
    assert raw == [], raw


def test_item_12_a_latency_card_fits_its_figure_with_a_unit() -> None:
    """Seven cards share a row on an evaluation run: a CPU run's p50 of 135,512 ms showed as "135,5…" (the closing
    walk). A latency is at most five figures with its unit."""
    from views.common import latency

    assert [latency(v) for v in (3.4, 812, 1323.75, 9_999, 135_512, 4_000_000)] == [
        "3 ms", "812 ms", "1.32 s", "10.00 s", "135.5 s", "4,000 s"
    ]  # fmt: skip
