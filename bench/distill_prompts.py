"""Write bench/distill_prompts.jsonl: the prompts of docs/DISTILL.md's study.

Code requests (kind "code"): the prompts of the last HELD_TASKS tasks are all held out, so the
held-out code asks for functions training never saw (in five languages); the other tasks'
prompts are split by specpair distill's hash split. Prose requests (kind "prose"), all held
out: never trained on, to see whether a gain on code transfers. Written by us from templates,
so the file can be committed and regenerated:

    python bench/distill_prompts.py > bench/distill_prompts.jsonl
"""

import itertools
import json
import random

TASKS = [
    "reverses the words in a sentence", "checks whether a string is a palindrome",
    "returns the n-th Fibonacci number", "merges two sorted lists", "flattens a nested list",
    "counts the vowels in a string", "removes duplicates from a list keeping the order",
    "computes the greatest common divisor of two integers", "checks whether a number is prime",
    "returns the most frequent element of a list", "splits a list into chunks of size n",
    "converts a Roman numeral to an integer", "converts an integer to binary without bin()",
    "finds the longest common prefix of a list of strings", "rotates a matrix 90 degrees",
    "transposes a matrix given as a list of lists", "validates an email address with a regex",
    "parses a CSV line that may contain quoted commas", "computes a moving average",
    "finds all anagrams of a word in a list", "counts the words in a text file",
    "returns the intersection of two lists", "implements binary search on a sorted list",
    "implements bubble sort", "implements quicksort", "implements merge sort",
    "computes the factorial of n iteratively", "checks whether brackets are balanced",
    "capitalizes the first letter of every word", "computes the median of a list",
    "groups a list of dictionaries by a key", "deep-merges two dictionaries",
    "finds the second largest number in a list", "generates all permutations of a string",
    "computes the Levenshtein distance of two strings", "converts Celsius to Fahrenheit",
    "returns the prime factors of an integer", "checks whether two strings are anagrams",
    "finds the missing number in a list of 1..n", "computes the dot product of two vectors",
    "formats a number of seconds as hours, minutes and seconds",
    "reads a JSON file and returns the value at a dotted key path",
    "retries a function call with exponential backoff",
    "implements a least-recently-used cache class", "implements a stack class with push and pop",
    "implements a queue using two stacks", "counts the lines of code in a folder of .py files",
    "returns the n largest values of a list using heapq", "run-length encodes a string",
    "decodes a run-length encoded string",
]
LANGUAGES = [("Python", "function"), ("JavaScript", "function"), ("Go", "function"),
             ("Rust", "function"), ("TypeScript", "function"), ("C", "function")]
HELD_TASKS = 8  # the last tasks: every prompt of theirs held out (tasks training never saw)
FORMS = ["Write a {lang} {what} that {task}.",
         "Write a short {lang} {what} that {task}, with a docstring or comment.",
         "In {lang}, implement a {what} that {task}. Keep it short."]
PROSE = [
    "Explain in a paragraph why the sky is blue.", "Write a short story about a lighthouse.",
    "Describe the water cycle for a ten-year-old.", "Give three tips for a job interview.",
    "Write a haiku about autumn leaves.", "Summarize the causes of the French Revolution.",
    "Explain what inflation is in simple words.", "Write a short poem about the sea.",
    "Describe a busy market in the morning.", "Explain how vaccines work.",
    "Write a letter thanking a teacher.", "What are the benefits of regular exercise?",
    "Describe the life cycle of a butterfly.", "Write a fable about a fox and a crow.",
    "Explain photosynthesis in a few sentences.", "Give advice to someone learning to cook.",
    "Describe a walk through a forest in winter.", "Explain why reading is important.",
    "Write a short speech for a friend's wedding.", "Describe how bread is made.",
    "Explain the difference between weather and climate.", "Write a diary entry of a sailor.",
    "Describe your ideal weekend.", "Explain how a rainbow forms.",
    "Write a product description for a wooden chair.", "Explain what a black hole is.",
    "Tell a short story about a lost dog finding home.", "Describe the taste of a ripe mango.",
    "Explain why sleep matters for health.", "Write a short review of an imaginary film.",
]


def main() -> None:
    rng = random.Random(0)
    held = set(TASKS[-HELD_TASKS:])
    for task, (lang, what) in itertools.product(TASKS, LANGUAGES):
        if task in held and lang == "C":
            continue  # five languages are enough to evaluate on
        line = {"prompt": rng.choice(FORMS).format(lang=lang, what=what, task=task),
                "kind": "code"}
        if task in held:
            line["held_out"] = True
        print(json.dumps(line))
    for text in PROSE:
        print(json.dumps({"prompt": text, "kind": "prose", "held_out": True}))


if __name__ == "__main__":
    main()
