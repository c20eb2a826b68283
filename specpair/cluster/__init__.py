"""Beyond one machine: benchmark running OpenAI-compatible servers (endpoint.py), emit checked
commands for vLLM and llama-server (deploy.py), and predict speedups from stated costs
(whatif.py). specpair runs no cluster itself."""
