#!/usr/bin/env python3
"""The DuckDB peer of `cargo bench -p candlekeep --bench import`.

Loads a candlekeep import CSV (`ts,trade_id,price,qty,side`, ts in
milliseconds) into a durable DuckDB database file with exact types, builds
candles of all 15 intervals candlekeep builds (1s to 1M: open, high, low,
close by time then id, volume, quote volume, trade count) with one GROUP BY
each, and checkpoints. Prints the trade and candle counts.

usage: duckdb_import.py TRADES.csv DATABASE.duckdb [--parquet DIR]
With --parquet, the trades and the candles are also written as zstd
Parquet files into DIR (as candlekeep's archive holds them).
"""
import sys

import duckdb

INTERVALS = [
    ("1s", "1 second"), ("1m", "1 minute"), ("3m", "3 minutes"), ("5m", "5 minutes"),
    ("15m", "15 minutes"), ("30m", "30 minutes"), ("1h", "1 hour"), ("2h", "2 hours"),
    ("4h", "4 hours"), ("6h", "6 hours"), ("8h", "8 hours"), ("12h", "12 hours"),
    ("1d", "1 day"), ("1w", "1 week"), ("1mo", "1 month"),  # 1M: names ignore case
]


def main() -> None:
    args = sys.argv[1:]
    parquet = None
    if "--parquet" in args:
        at = args.index("--parquet")
        parquet = args[at + 1]
        del args[at:at + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    csv, database = args
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        """
        CREATE TABLE trades AS
        SELECT epoch_ms(ts) AS ts, trade_id, price, qty, side
        FROM read_csv(?, header = true, columns = {
            'ts': 'BIGINT', 'trade_id': 'BIGINT', 'price': 'DECIMAL(18,8)',
            'qty': 'DECIMAL(18,8)', 'side': 'VARCHAR'})
        """,
        [csv],
    )
    candles = 0
    for name, width in INTERVALS:
        table = f'"candles_{name}"'
        con.execute(
            f"""
            CREATE TABLE {table} AS
            SELECT time_bucket(INTERVAL '{width}', ts) AS open_time,
                   arg_min(price, (ts, trade_id)) AS open,
                   max(price) AS high, min(price) AS low,
                   arg_max(price, (ts, trade_id)) AS close,
                   sum(qty) AS volume, sum(CAST(price AS DECIMAL(38,8)) * qty) AS quote_volume,
                   count(*) AS trades
            FROM trades GROUP BY 1
            """
        )
        candles += con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if parquet:
            con.execute(
                f"COPY {table} TO '{parquet}/candles_{name}.parquet' (FORMAT parquet, COMPRESSION zstd)"
            )
    if parquet:
        con.execute(
            f"COPY trades TO '{parquet}/trades.parquet' (FORMAT parquet, COMPRESSION zstd)"
        )
    con.execute("CHECKPOINT")
    trades = con.execute("SELECT count(*) FROM trades").fetchone()[0]
    con.close()
    print(f"trades {trades} candles {candles}")


if __name__ == "__main__":
    main()
