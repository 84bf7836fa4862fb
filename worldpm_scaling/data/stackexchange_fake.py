"""A StackExchange-format Posts.xml generator, for the tests and the conversion benchmark."""

from __future__ import annotations

import os
import random
from pathlib import Path
from xml.sax.saxutils import quoteattr


def write_fake_dump(path: str | Path, n_posts: int, *, seed: int = 0, body_words: int = 40) -> Path:
    """A StackExchange-format Posts.xml of `n_posts` rows (questions with 0–6 answers each, some
    answers arriving far later, as in real dumps). Written by temp + rename."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(2000)]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    late: list[str] = []
    pid = 1
    written = 0
    with open(tmp, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        while written < n_posts:
            qid = pid
            pid += 1
            n_ans = rng.randint(0, 6)
            aids = list(range(pid, pid + n_ans))
            pid += n_ans
            acc = f' AcceptedAnswerId="{rng.choice(aids)}"' if aids and rng.random() < 0.5 else ""
            text = " ".join(rng.choices(words, k=body_words))
            f.write(
                f'  <row Id="{qid}" PostTypeId="1"{acc} CreationDate="2020-01-01T00:00:00.000" Score="3" '
                f'Title="question {qid}" Body={quoteattr("<p>" + text + "</p>")} />\n'
            )
            written += 1
            for aid in aids:
                body = "<p>" + " ".join(rng.choices(words, k=body_words)) + "</p>"
                if rng.random() < 0.3:
                    body += "<pre><code>x = 1\n</code></pre>"
                row = (
                    f'  <row Id="{aid}" PostTypeId="2" ParentId="{qid}" CreationDate="2020-01-02T00:00:00.000" '
                    f'Score="{rng.randint(-2, 12)}" Body={quoteattr(body)} />\n'
                )
                if rng.random() < 0.2:
                    late.append(row)  # answered years later: appears far down the file
                else:
                    f.write(row)
                written += 1
            if len(late) > 5000:
                f.writelines(late)
                late.clear()
        f.writelines(late)
        f.write("</posts>\n")
    os.replace(tmp, path)
    return path
