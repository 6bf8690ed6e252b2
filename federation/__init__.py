"""Adapter federations: compose LoRA adapters over one base model (additive, gated, sequential) and serve them.

spec     the Federation model saved as one file
compose  validation and construction (what PEFT would silently get wrong is refused here)
router   the gated method's learned router
engine   cached, shared models; adapters switched per request; streamed generation
run      answering a prompt with a federation
store    saved federations in the registry
"""
