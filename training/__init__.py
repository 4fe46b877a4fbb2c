"""LoRA fine-tuning of causal LMs: data validation, packing, and the training backends (torch, neuron)."""
