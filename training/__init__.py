"""The training engine: LoRA / QLoRA adapters trained in-process with PEFT and TRL.

config          the job config (one pydantic model) and presets
base_models     the embedded model and local model folders
models          load_tokenizer / load_model for training and inference (4-bit / 8-bit quantized while loading)
flops           useful FLOPs of a training step and the machine's measured matmul peak
formatting      registry datasets turned into chat-template text for the trainer
worker          one job through TRL (heavy: imports torch, transformers, trl)
jobs            the queue, worker threads and job state on disk
job_folder      one job's files: state, metrics, log, checkpoints, adapter, result
adapters        the adapter registry (PEFT folders with their lineage)
registered_models  local model folders registered as base models; descriptions and tags of every model
evaluation      the held-out scoring rules
errors          what a user can fix when training

It imports `registry` only, never `services` or streamlit.
"""
