"""Replays a candlekeep hftbacktest export through hftbacktest's own
engine and prints, as JSON, the local book at the end of the data and
what the file holds.

Usage: hftbacktest_book.py FILE.npz TICK_SIZE LOT_SIZE
"""
import json
import sys

import numpy as np
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28

path, tick, lot = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
data = np.load(path)["data"]
asset = (
    BacktestAsset()
    .data([path])
    .linear_asset(1.0)
    .constant_order_latency(0, 0)
    .risk_adverse_queue_model()
    .no_partial_fill_exchange()
    .trading_value_fee_model(0.0, 0.0)
    .tick_size(tick)
    .lot_size(lot)
)
hbt = HashMapMarketDepthBacktest([asset])
# To the end of the data, in few steps: the clock starts at the first
# event (by either time) once the backtest has begun.
end = int(max(data["local_ts"].max(), data["exch_ts"].max()))
while True:
    now = hbt.current_timestamp
    step = end - now + 1 if now < end else 1
    if hbt.elapse(step) != 0 or hbt.current_timestamp > end:
        break
depth = hbt.depth(0)
bids, asks = [], []
for e in depth.snapshot():
    level = [repr(float(e["px"])), repr(float(e["qty"]))]
    if e["ev"] & BUY_EVENT:
        bids.append(level)
    elif e["ev"] & SELL_EVENT:
        asks.append(level)
ev = data["ev"].astype(np.uint64)
kind = ev & np.uint64(0xFF)
exch = (ev & np.uint64(EXCH_EVENT)) != 0
local = (ev & np.uint64(LOCAL_EVENT)) != 0
print(json.dumps({
    "bids": bids,
    "asks": asks,
    "events": int(len(data)),
    # Each trade once: as the local processor sees it.
    "trades": int(((kind == 2) & local).sum()),
    "clears": int((kind == 3).sum()),
    "exch_in_order": bool((np.diff(data["exch_ts"][exch]) >= 0).all()),
    "local_in_order": bool((np.diff(data["local_ts"][local]) >= 0).all()),
    "exch_events": int(exch.sum()),
    "local_events": int(local.sum()),
}))
hbt.close()
