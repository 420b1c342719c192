#!/usr/bin/env python3
"""The peer of `cargo bench -p ck-sources --bench book`: cryptofeed's C
order book (`order-book` on PyPI) applying the same recorded stream of
level changes as candlekeep's engine.

The stream file has one change a line, `book side price size` (side `b`
or `a`; size 0 removes the level), as the bench wrote it from a recording.
The lines are read into `Decimal`s first (not timed), as cryptofeed does
when it reads a message; then every change is applied, `rounds` times over,
as cryptofeed applies a delta (`book.bids[price] = size`, or `del` of a
level that is there). Prints one JSON line: updates per round, the seconds
of each round, and the bytes Python allocated for the books (tracemalloc).

usage: order_book_peer.py STREAM ROUNDS
"""
import json
import sys
import time
import tracemalloc
from decimal import Decimal

from order_book import OrderBook


def main() -> None:
    path, rounds = sys.argv[1], int(sys.argv[2])
    changes = []
    with open(path) as f:
        for line in f:
            book, side, price, size = line.split()
            changes.append((int(book), side == "b", Decimal(price), Decimal(size)))
    n_books = 1 + max(c[0] for c in changes)

    def apply_all(books):
        for book, bid, price, size in changes:
            levels = books[book].bids if bid else books[book].asks
            if size:
                levels[price] = size
            elif price in levels:
                del levels[price]

    seconds = []
    for _ in range(rounds):
        books = [OrderBook() for _ in range(n_books)]
        start = time.perf_counter()
        apply_all(books)
        seconds.append(time.perf_counter() - start)
    # Memory: books built from the stream's text, the Decimals they keep
    # included (made inside the traced span, as a live feed makes them).
    texts = [(b, bid, str(p), str(sz)) for b, bid, p, sz in changes]
    updates = len(changes)
    changes[:] = []
    del books
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    books = [OrderBook() for _ in range(n_books)]
    for book, bid, price, size in texts:
        levels = books[book].bids if bid else books[book].asks
        p = Decimal(price)
        if Decimal(size):
            levels[p] = Decimal(size)
        elif p in levels:
            del levels[p]
    after = tracemalloc.get_traced_memory()[0]
    levels = sum(len(b.bids) + len(b.asks) for b in books)
    print(json.dumps({"updates": updates, "seconds": seconds,
                      "bytes": after - before, "levels": levels}))

if __name__ == "__main__":
    main()
