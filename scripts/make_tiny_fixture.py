"""Writes tests/fixtures/Tiny: a small synthetic dataset in the LETTER format (the 'bring your own' layout).

150 users, 60 items in 6 themes; each user mostly follows one theme, so a recommender can learn something.
Deterministic (seeded); rerunning rewrites identical files.
"""
import json
import random
from pathlib import Path

out = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "Tiny"
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(7)
n_items, themes = 60, ["lipstick", "shampoo", "nail polish", "perfume", "sunscreen", "face mask"]
brands = ["Acme", "Borea", "Cirro", "Dune", "Elm"]
items = {str(i): {"title": f"{themes[i % 6].title()} no. {i}", "brand": brands[i % 5],
                  "categories": f"Beauty,{themes[i % 6].title()}", "description": ""} for i in range(n_items)}
inter = {}
for u in range(150):
    theme = u % 6
    pool = [i for i in range(n_items) if i % 6 == theme]
    seq = [rng.choice(pool) if rng.random() < 0.8 else rng.randrange(n_items) for _ in range(rng.randint(5, 12))]
    inter[str(u)] = seq
(out / "Tiny.inter.json").write_text(json.dumps(inter, indent=1))
(out / "Tiny.item.json").write_text(json.dumps(items, indent=1))
print("wrote", out)
