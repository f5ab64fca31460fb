"""Regenerate the bundled datasets of examples/local (they are committed; this documents them).

    python examples/local/generate_data.py          # writes examples/local/data/*/*.jsonl

Synthetic customer-support text, seed 20261122: tickets (intent, urgency, title, order id),
product reviews (sentiment) and pre-sales questions (product). Every label is recoverable from
the text (keywords, with noise words around them), so a tiny model can learn the tasks on a CPU
in minutes. Sizes are deliberately imbalanced, like the paper's setting: one high-resource task
(intent, 1200 examples) and several low-resource ones (80 to 400).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20261122
OUT = Path(__file__).parent / "data"

INTENTS = {
    "refund": ["I want my money back for", "please refund the", "requesting a refund on"],
    "shipping": ["where is my", "the delivery of my", "tracking shows nothing for my"],
    "cancel": ["cancel my order of the", "I no longer want the", "stop the order for the"],
    "account": ["I cannot log in to order the", "reset my password, I need the",
                "my account is locked and I bought the"],
    "other": ["do you sell a blue", "what colours does the", "is there a student discount on the"],
}
PRODUCTS = ["phone", "laptop", "headphones", "tablet"]
SENTIMENT = {
    "positive": ["thanks so much", "you are great", "love your service", "happy customer"],
    "negative": ["this is terrible", "very disappointed", "worst experience", "I am angry"],
}
URGENCY = {
    "low": ["no rush", "whenever you can", "not urgent"],
    "medium": ["soon please", "this week if possible", "fairly soon"],
    "high": ["urgent", "immediately", "right now, it is an emergency"],
}
FILLER = ["hello", "hi team", "good morning", "hey", "dear support", ""]
REVIEW_OPENERS = ["I bought the", "we got the", "my new", "just received the",
                  "after a week with the"]
QUESTIONS = ["do you have a cheaper", "what is the warranty on the", "can I return the",
             "is there a student discount on the", "what colours does the"]
TITLE = {
    "refund": "Refund request", "shipping": "Delivery question", "cancel": "Cancellation",
    "account": "Account problem", "other": "Product question",
}


def message(rng: random.Random) -> dict:
    """A support message with every feature in it (intent, product, order, urgency)."""
    intent = rng.choice(list(INTENTS))
    product = rng.choice(PRODUCTS)
    urgency = rng.choice(list(URGENCY))
    order = f"#{rng.choice('ABCDEFGH')}{rng.randint(1000, 9999)}"
    parts = [rng.choice(FILLER), f"{rng.choice(INTENTS[intent])} {product}", f"order {order}",
             rng.choice(URGENCY[urgency])]
    text = ", ".join(p for p in parts if p) + "."
    return {"text": text[0].upper() + text[1:], "intent": intent, "product": product,
            "urgency": urgency, "order": order}


def review(rng: random.Random) -> dict:
    """A product review: sentiment comes from reviews, as it usually does, not from tickets."""
    sentiment = rng.choice(list(SENTIMENT))
    product = rng.choice(PRODUCTS)
    text = f"{rng.choice(REVIEW_OPENERS)} {product}, {rng.choice(SENTIMENT[sentiment])}."
    return {"text": text[0].upper() + text[1:], "sentiment": sentiment, "product": product}


def question(rng: random.Random) -> dict:
    """A pre-sales question naming one product among other words."""
    product = rng.choice(PRODUCTS)
    text = f"{rng.choice(FILLER) or 'hi'}, {rng.choice(QUESTIONS)} {product}?"
    return {"text": text[0].upper() + text[1:], "product": product}


TASKS = {
    # task: (examples, source of rows, make (input, output), has eval file)
    "intent": (1200, message, lambda m: (m["text"], m["intent"]), True),
    "sentiment": (400, review, lambda m: (m["text"], m["sentiment"]), False),
    "urgency": (250, message, lambda m: (m["text"], m["urgency"]), False),
    "product": (150, question, lambda m: (m["text"], m["product"]), False),
    "title": (120, message, lambda m: (m["text"], f"{TITLE[m['intent']]}: {m['product']}"), False),
    "order-id": (80, message, lambda m: (m["text"], m["order"]), False),
}


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for text, output in rows:
            handle.write(json.dumps({"input": text, "output": output}) + "\n")


def main() -> None:
    rng = random.Random(SEED)
    for task, (size, source, make, has_eval) in TASKS.items():
        rows = [make(source(rng)) for _ in range(size)]
        write(OUT / task / "train.jsonl", rows)
        if has_eval:
            write(OUT / task / "eval.jsonl", [make(source(rng)) for _ in range(size // 10)])
    print(f"wrote {len(TASKS)} tasks to {OUT}")


if __name__ == "__main__":
    main()
