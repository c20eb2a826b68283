"""`specpair serve`: an OpenAI-compatible server with speculative decoding.

engine.py  one model instance, a bounded FIFO queue, a worker thread (no HTTP in it)
schemas.py OpenAI request models and response/chunk builders, plus specpair's additions
metrics.py Prometheus counters under `specpair:` (vLLM's and llama.cpp's spec_decode names)
app.py     FastAPI routes, SSE streaming, errors, API key, body limit
static/    the chat page: one self-contained HTML file
"""
