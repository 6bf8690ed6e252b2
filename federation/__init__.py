"""Adapter federations: compose LoRA adapters over one base model (additive, gated, sequential) and serve them.

spec     the Federation model saved as one file
compose  validation and construction (what PEFT would silently get wrong is refused here)
methods  one module per composition method (additive, gated, sequential) behind one interface
router   the gated method's learned router
engine   cached, shared models; adapters switched per request; streamed generation
run      answering a prompt with a federation
store    saved federations in the registry
errors   what a user can fix when composing or serving
publish  an adapter or additive federation merged (or not) into a verified package with a manifest

It imports `registry` and `training` (model loading, adapters), never `services` or streamlit.
"""
