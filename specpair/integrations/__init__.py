"""specpair inside other engines: llama_cpp.py gives llama-cpp-python's `Llama` a model draft
(`Llama(draft_model=LlamaDraft(...))`)."""
