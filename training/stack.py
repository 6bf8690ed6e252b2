"""The Hugging Face stack, imported so that any thread may be the first to use it.

transformers and trl end their `__init__` by replacing their own module in `sys.modules` with a lazy one. On
CPython 3.11, a thread whose `from transformers import X` had to wait for another thread's first import of the
package is handed the module object from before the swap, which holds none of the lazy names: "cannot import name
'TrainerCallback' from 'transformers'". That failed the queued job a restarted server dispatched while the
Training Jobs page was importing transformers to list the base models. `importlib.import_module` waits the same
way but returns the finished module, so every first use of the stack goes through `import_stack` before any
`from transformers/peft/trl import ...` (peft's own imports of transformers included).
"""

import importlib
from types import ModuleType


def import_stack(*also: str) -> ModuleType:
    """Finish importing transformers (then `also`, e.g. "trl") in this thread; returns the transformers module."""
    transformers = importlib.import_module("transformers")
    for name in also:
        importlib.import_module(name)
    return transformers
