#!/usr/bin/env python3
"""The peer of `cargo bench -p ck-sources --bench book`: cryptofeed's C
order book (`order-book` on PyPI) applying the same recorded stream of
level changes as candlekeep's engine.

The stream file, as the bench wrote it from the recordings: `S book`
starts a snapshot and `D book` a delta, whose levels follow as `side price
size` (side `b` or `a`; in a delta, size 0 removes the level). It is read into `Decimal`s first (not timed), as cryptofeed
reads a message; then it is applied, `rounds` times over, as cryptofeed
applies it: a snapshot assigns a fresh book's two dicts, a delta sets
`book.bids[price] = size` or deletes a level that is there; after each
message, the best bid and ask are read. Prints one JSON line: updates per round, the seconds
of each round, and the bytes Python allocated for the books (tracemalloc).

usage: order_book_peer.py STREAM ROUNDS reads|apply
(`apply`: the top is never read, so order-book never sorts)
"""
import json
import sys
import time
import tracemalloc
from decimal import Decimal

from order_book import OrderBook


def read(path):
    """The stream as (True, book, bids, asks) for snapshots and
    (False, book, [(bid?, price, size)]) for deltas."""
    steps, updates = [], 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts[0] == "S":
                steps.append((True, int(parts[1]), {}, {}))
            elif parts[0] == "D":
                steps.append((False, int(parts[1]), []))
            else:
                side, price, size = parts
                step = steps[-1]
                if step[0]:
                    step[2 if side == "b" else 3][Decimal(price)] = Decimal(size)
                else:
                    step[2].append((side == "b", Decimal(price), Decimal(size)))
                updates += 1
    return steps, updates


def apply_all(steps, books, reads):
    for step in steps:
        if step[0]:
            book = OrderBook()
            book.bids = step[2]
            book.asks = step[3]
            books[step[1]] = book
        else:
            book = books[step[1]]
            for bid, price, size in step[2]:
                levels = book.bids if bid else book.asks
                if size:
                    levels[price] = size
                elif price in levels:
                    del levels[price]
        # What every consumer reads after a message: the top.
        if not reads:
            continue
        if len(book.bids):
            book.bids.index(0)
        if len(book.asks):
            book.asks.index(0)


def main() -> None:
    path, rounds, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    reads = mode == "reads"
    steps, updates = read(path)
    n_books = 1 + max(s[1] for s in steps)
    seconds = []
    for _ in range(rounds):
        books = [OrderBook() for _ in range(n_books)]
        start = time.perf_counter()
        apply_all(steps, books, reads)
        seconds.append(time.perf_counter() - start)
    del books, steps
    # Memory: the books built from the stream, the Decimals they keep
    # included (read inside the traced span, as a live feed makes them).
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    steps, _ = read(path)
    books = [OrderBook() for _ in range(n_books)]
    apply_all(steps, books, reads)
    del steps
    after = tracemalloc.get_traced_memory()[0]
    levels = sum(len(b.bids) + len(b.asks) for b in books)
    print(json.dumps({"updates": updates, "seconds": seconds,
                      "bytes": after - before, "levels": levels}))

if __name__ == "__main__":
    main()
