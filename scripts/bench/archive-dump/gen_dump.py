"""Writes a deterministic SQL-like dump of about N MiB to stdout (a pg_dump-style COPY-free
INSERT dump: realistic text that gzip compresses about 4-6 times)."""

import random
import sys

mib = int(sys.argv[1])
target = mib << 20
rng = random.Random(20261123)
names = [f"{a}{b}" for a in ("an", "bo", "ca", "de", "el", "fi", "ga", "ho") for b in ("ton", "ley", "mar", "vik", "sen", "dahl")]
cities = ["Oslo", "Lyon", "Porto", "Graz", "Turku", "Brno", "Gent", "Cork", "Bari", "Split"]
out = sys.stdout.buffer
written = 0
out.write(b"-- PostgreSQL database dump\nSET statement_timeout = 0;\nCREATE TABLE public.orders (id bigint, customer text, city text, total numeric(10,2), created timestamp with time zone, note text);\n")
i = 0
while written < target:
    rows = []
    for _ in range(1000):
        i += 1
        rows.append(
            f"INSERT INTO public.orders VALUES ({i}, '{rng.choice(names)} {rng.choice(names).title()}', "
            f"'{rng.choice(cities)}', {rng.randint(1, 99999) / 100:.2f}, "
            f"'2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}+00', "
            f"'{rng.choice(('', 'gift', 'express', 'fragile', 'call before delivery'))}');\n"
        )
    chunk = "".join(rows).encode()
    out.write(chunk)
    written += len(chunk)
