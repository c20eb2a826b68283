"""From a checked pair to a serving engine's command line, and predictions without hardware.

plan.py     `specpair deploy vllm|llama-server`: check a pair, print a ready command
whatif.py   `specpair advise --what-if`: a speedup predicted from stated costs
"""
