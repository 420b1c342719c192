// candlekeep's web page: a live candle chart, the order book (figures, a
// depth chart, the spread over time), a comparison of instruments in
// percent change, a statistics table and a status panel. It reads only the
// public API of the server that serves it (/api/v1/...), and draws with
// TradingView Lightweight Charts, vendored from npm (web/vendor.sh).
//
// The state of the page lives in the URL's fragment, so that a view can be
// shared: #exchange=binance&instrument=BTC-USDT&interval=1m&compare=a,b
//
// Elements carry what they show as data attributes (data-candles,
// data-series, data-rows, ...), which the browser test reads.
'use strict';

(() => {
  const LC = window.LightweightCharts;
  const INTERVALS = {
    '1s': 1, '1m': 60, '3m': 180, '5m': 300, '15m': 900, '30m': 1800,
    '1h': 3600, '2h': 7200, '4h': 14400, '6h': 21600, '8h': 28800,
    '12h': 43200, '1d': 86400, '1w': 604800, '1M': 2592000,
  };
  const WINDOWS = ['1h', '6h', '24h', '7d', '30d'];
  const PAGE = 500;
  const COLORS = ['#4c9aff', '#f5a623', '#7ed321', '#e056fd', '#50e3c2',
    '#ff6b6b', '#c0c0c0', '#ffd166', '#9b59b6', '#1abc9c'];
  const UP = '#26a69a';
  const DOWN = '#ef5350';

  const $ = (id) => document.getElementById(id);
  const keyOf = (i) => `${i.exchange}:${i.instrument}`;
  const toSec = (iso) => Math.floor(Date.parse(iso) / 1000);
  const iso = (sec) => new Date(sec * 1000).toISOString();
  const windowSecs = (w) => {
    const m = /^(\d+)([smhdw])$/.exec(w);
    if (!m) return null;
    return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2]];
  };
  const fmt = (x, digits) => (x == null || !Number.isFinite(x) ? '–'
    : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
  // Percent, never "-0.00%".
  const pct = (x, digits = 2) => {
    if (x == null || !Number.isFinite(x)) return '–';
    const text = (x * 100).toFixed(digits);
    return `${Number(text) === 0 ? (0).toFixed(digits) : text}%`;
  };
  // Digits for a price of this size; the chart's axis and the legend both
  // write prices with them.
  const priceDigits = (n) => (n >= 1000 ? 2 : n >= 1 ? 4 : 8);
  const price = (s, digits) => {
    const n = Number(s);
    if (!Number.isFinite(n)) return '–';
    return n.toFixed(digits == null ? priceDigits(n) : digits);
  };
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const when = (t) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–');

  // ---- the page's state, kept in the URL fragment ----
  const params = new URLSearchParams(location.hash.slice(1));
  const state = {
    exchange: params.get('exchange'),
    instrument: params.get('instrument'),
    interval: INTERVALS[params.get('interval')] ? params.get('interval') : '1m',
    compare: (params.get('compare') || '').split(',').filter(Boolean),
    compareWindow: params.get('cw') || '24h',
    statsWindow: params.get('sw') || '24h',
  };
  let instruments = [];

  function saveState() {
    const p = new URLSearchParams();
    if (state.exchange) p.set('exchange', state.exchange);
    if (state.instrument) p.set('instrument', state.instrument);
    p.set('interval', state.interval);
    if (state.compare.length) p.set('compare', state.compare.join(','));
    p.set('cw', state.compareWindow);
    p.set('sw', state.statsWindow);
    history.replaceState(null, '', `#${p}`);
  }

  function problem(message) {
    const el = $('problem');
    el.hidden = !message;
    el.textContent = message || '';
  }

  async function getJson(url) {
    const res = await fetch(url, { headers: { accept: 'application/json' } });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      throw new Error(body && body.error ? body.error.message : `${url}: HTTP ${res.status}`);
    }
    return { body, next: res.headers.get('x-next-cursor') };
  }

  const chartOptions = () => ({
    autoSize: true,
    layout: { background: { color: '#161c23' }, textColor: '#d5dbe1', attributionLogo: true },
    grid: { vertLines: { color: '#222a33' }, horzLines: { color: '#222a33' } },
    rightPriceScale: { borderColor: '#2a323c' },
    timeScale: { borderColor: '#2a323c', timeVisible: true, secondsVisible: false },
    crosshair: { mode: LC.CrosshairMode.Normal },
  });

  // ---- the live candle chart ----
  const chartEl = $('chart');
  const chart = LC.createChart(chartEl, chartOptions());
  const candleSeries = chart.addSeries(LC.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
  });
  const volumeSeries = chart.addSeries(LC.HistogramSeries, {
    priceFormat: { type: 'volume' }, priceScaleId: '', lastValueVisible: false, priceLineVisible: false,
  });
  volumeSeries.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  // Candles keep above the volume bars.
  candleSeries.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
  let chartDigits = 2;
  const setChartDigits = (close) => {
    const digits = priceDigits(Number(close));
    if (digits === chartDigits) return;
    chartDigits = digits;
    candleSeries.applyOptions({ priceFormat: { type: 'price', precision: digits, minMove: 10 ** -digits } });
  };
  let bars = []; // oldest first: { bar, volume, record }
  let olderCursor = null;
  let loadingOlder = false;
  let generation = 0;
  let updates = 0;

  const toBar = (c) => ({
    bar: { time: toSec(c.open_time), open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close) },
    volume: { time: toSec(c.open_time), value: Number(c.volume), color: Number(c.close) >= Number(c.open) ? 'rgba(38,166,154,0.45)' : 'rgba(239,83,80,0.45)' },
    record: c,
  });

  function drawAll() {
    if (bars.length) setChartDigits(bars[bars.length - 1].record.close);
    candleSeries.setData(bars.map((b) => b.bar));
    volumeSeries.setData(bars.map((b) => b.volume));
    chartEl.dataset.candles = String(candleSeries.data().length);
  }

  function showLegend(b) {
    if (!b) { $('legend').textContent = ''; return; }
    const c = b.record;
    const p = (x) => price(x, chartDigits);
    $('legend').textContent = `${when(c.open_time)}  O ${p(c.open)}  H ${p(c.high)}  L ${p(c.low)}  C ${p(c.close)}  V ${fmt(Number(c.volume), 4)}  ${plural(c.trades, 'trade')}${c.state ? `  (${c.state})` : ''}`;
  }

  chart.subscribeCrosshairMove((p) => {
    const t = p && p.time;
    showLegend(t ? bars.find((b) => b.bar.time === t) : bars[bars.length - 1]);
  });

  function candlesUrl(cursor) {
    const q = new URLSearchParams({
      exchange: state.exchange, instrument: state.instrument, interval: state.interval,
      order: 'desc', limit: String(PAGE),
    });
    if (cursor) q.set('cursor', cursor);
    return `/api/v1/candles?${q}`;
  }

  async function loadChart() {
    const mine = ++generation;
    bars = [];
    olderCursor = null;
    drawAll();
    $('chart-title').textContent = `${state.exchange} ${state.instrument} · ${state.interval}`;
    chart.applyOptions({ timeScale: { secondsVisible: state.interval === '1s' } });
    try {
      const { body, next } = await getJson(candlesUrl(null));
      if (mine !== generation) return;
      bars = body.reverse().map(toBar);
      olderCursor = next;
      drawAll();
      const n = bars.length;
      chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, n - 150), to: n + 3 });
      showLegend(bars[n - 1]);
      problem(null);
    } catch (e) {
      problem(`Chart: ${e.message}`);
    }
    live.follow();
  }

  async function loadOlder() {
    if (!olderCursor || loadingOlder) return;
    loadingOlder = true;
    const mine = generation;
    try {
      const { body, next } = await getJson(candlesUrl(olderCursor));
      if (mine !== generation) return;
      const older = body.reverse().map(toBar).filter((b) => !bars.length || b.bar.time < bars[0].bar.time);
      olderCursor = next;
      if (older.length) {
        const range = chart.timeScale().getVisibleLogicalRange();
        bars = older.concat(bars);
        drawAll();
        if (range) {
          chart.timeScale().setVisibleLogicalRange({ from: range.from + older.length, to: range.to + older.length });
        }
      }
    } catch (e) {
      problem(`Older candles: ${e.message}`);
    } finally {
      loadingOlder = false;
    }
  }

  chart.timeScale().subscribeVisibleLogicalRangeChange((r) => {
    if (r && r.from < 30) loadOlder();
  });

  // A candle from the WebSocket: the newest moves on; an older one (a
  // revision after a late trade or a repaired gap) replaces its bar.
  function applyCandle(c) {
    const b = toBar(c);
    const last = bars[bars.length - 1];
    if (!last || b.bar.time > last.bar.time) {
      bars.push(b);
    } else if (b.bar.time === last.bar.time) {
      bars[bars.length - 1] = b;
    } else {
      let lo = 0;
      let hi = bars.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (bars[mid].bar.time < b.bar.time) lo = mid + 1; else hi = mid;
      }
      if (bars[lo].bar.time === b.bar.time) {
        bars[lo] = b;
        try {
          candleSeries.update(b.bar, true);
          volumeSeries.update(b.volume, true);
        } catch (_) {
          drawAll();
        }
      } else if (lo > 0) {
        bars.splice(lo, 0, b);
        drawAll();
      }
      // Older than anything loaded: scrolling back will fetch it.
      updates += 1;
      chartEl.dataset.updates = String(updates);
      return;
    }
    candleSeries.update(b.bar);
    volumeSeries.update(b.volume);
    chartEl.dataset.candles = String(candleSeries.data().length);
    updates += 1;
    chartEl.dataset.updates = String(updates);
    showLegend(b);
  }

  // ---- the WebSocket: one connection, reconnecting, following the chart ----
  const live = (() => {
    let ws = null;
    let topic = null;
    let retry = 500;
    const badge = $('live');
    const send = (m) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(m)); };
    const sub = (op, t) => send({ op, channel: 'candles', exchange: t.exchange, instrument: t.instrument, interval: t.interval });
    // The badge: the WebSocket's state, and the server's readiness
    // (/health): "live" only while both hold.
    let open = false;
    let health = null;
    function showBadge() {
      let text = 'reconnecting';
      let title = 'Live updates over the WebSocket: reconnecting';
      if (open && health) {
        if (health.capturing === 'not capturing') {
          text = 'not capturing';
          title = 'This process serves stored data; it captures nothing.';
        } else if (health.status === 'ok') {
          text = 'live';
          title = 'Capturing, and live updates over the WebSocket';
        } else {
          text = 'degraded';
          title = (health.reasons || []).join('\n');
        }
      }
      badge.textContent = text;
      badge.title = title;
      badge.dataset.status = text;
      badge.classList.toggle('on', text === 'live');
    }
    async function checkHealth() {
      try {
        const res = await fetch('/health', { headers: { accept: 'application/json' } });
        health = await res.json();
      } catch (_) {
        health = null;
      }
      showBadge();
    }
    function connect() {
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws`);
      ws.onopen = () => {
        retry = 500;
        open = true;
        showBadge();
        if (topic) sub('subscribe', topic);
      };
      ws.onclose = () => {
        open = false;
        showBadge();
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 15000);
      };
      ws.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch (_) { return; }
        const mine = topic && m.exchange === topic.exchange && m.instrument === topic.instrument && m.interval === topic.interval;
        if (m.type === 'snapshot' && m.channel === 'candles' && mine && m.data) applyCandle(m.data);
        else if (m.type === 'candle' && mine) applyCandle({ ...m.candle, state: m.state });
        else if (m.type === 'lagged') loadChart();
        else if (m.type === 'error') problem(`Live updates: ${m.message}`);
      };
    }
    return {
      start() {
        connect();
        checkHealth();
        setInterval(checkHealth, 5000);
      },
      follow() {
        const next = { exchange: state.exchange, instrument: state.instrument, interval: state.interval };
        if (topic && topic.exchange === next.exchange && topic.instrument === next.instrument && topic.interval === next.interval) return;
        if (topic) sub('unsubscribe', topic);
        topic = next;
        sub('subscribe', topic);
      },
    };
  })();

  // ---- comparison in percent change ----
  const compareEl = $('compare');
  const compareChart = LC.createChart(compareEl, chartOptions());
  compareChart.applyOptions({
    localization: { priceFormatter: (v) => `${v.toFixed(2)}%` },
  });
  let compareSeries = [];

  function renderPick() {
    const filter = $('compare-filter').value.trim().toUpperCase();
    const el = $('compare-pick');
    el.textContent = '';
    for (const i of instruments) {
      const key = keyOf(i);
      const on = state.compare.includes(key);
      if (filter && !on && !key.toUpperCase().includes(filter)) continue;
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = on;
      box.value = key;
      box.addEventListener('change', () => {
        state.compare = box.checked ? state.compare.concat(key) : state.compare.filter((k) => k !== key);
        saveState();
        loadCompare();
      });
      label.append(box, ` ${key}`);
      el.append(label);
    }
  }

  async function loadCompare() {
    for (const s of compareSeries) compareChart.removeSeries(s);
    compareSeries = [];
    const legend = $('compare-legend');
    legend.textContent = '';
    const chosen = state.compare.map((k) => instruments.find((i) => keyOf(i) === k)).filter(Boolean);
    const span = windowSecs(state.compareWindow) || 86400;
    const end = Math.max(0, ...chosen.map((i) => toSec(i.last_trade_time)));
    let points = 0;
    const results = await Promise.all(chosen.map(async (i) => {
      const q = new URLSearchParams({
        exchange: i.exchange, instrument: i.instrument, from: iso(end - span), to: iso(end + 60), points: '1500',
      });
      try {
        return { i, rows: (await getJson(`/api/v1/prices?${q}`)).body };
      } catch (e) {
        return { i, error: e.message };
      }
    }));
    results.forEach(({ i, rows, error }, n) => {
      const color = COLORS[n % COLORS.length];
      const tag = document.createElement('span');
      tag.style.setProperty('--c', color);
      if (error || !rows.length) {
        tag.textContent = `${keyOf(i)}: ${error || 'no data in the window'}`;
        legend.append(tag);
        return;
      }
      const base = Number(rows[0].price);
      const data = rows.map((r) => ({ time: toSec(r.time), value: (Number(r.price) / base - 1) * 100 }));
      const s = compareChart.addSeries(LC.LineSeries, { color, lineWidth: 2, priceLineVisible: false });
      s.setData(data);
      compareSeries.push(s);
      points += data.length;
      tag.textContent = `${keyOf(i)} ${data[data.length - 1].value >= 0 ? '+' : ''}${data[data.length - 1].value.toFixed(2)}%`;
      legend.append(tag);
    });
    compareChart.timeScale().fitContent();
    compareEl.dataset.series = String(compareSeries.length);
    compareEl.dataset.points = String(points);
  }

  // ---- the order book: figures, a depth chart and the spread over time ----
  // Shown for an instrument whose book is captured (or archived); hidden
  // while /api/v1/book has none. Refreshed every two seconds.
  const spreadEl = $('spread');
  const spreadChart = LC.createChart(spreadEl, {
    ...chartOptions(),
    timeScale: { borderColor: '#2a323c', timeVisible: true, secondsVisible: true },
  });
  const spreadSeries = spreadChart.addSeries(LC.LineSeries, {
    color: COLORS[1], lineWidth: 2, priceLineVisible: false,
    priceFormat: { type: 'price', precision: 3, minMove: 0.001 },
  });
  let bookAsked = 0;
  const SVG = 'http://www.w3.org/2000/svg';
  const svg = (name, attrs, text) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text != null) el.textContent = text;
    return el;
  };

  // Cumulative size from the best level outwards, while within `inside`
  // (the best level always: a spread can be wider than the window).
  const cumulative = (levels, inside) => {
    let total = 0;
    const out = [];
    for (const [p, s] of levels) {
      if (out.length && !inside(p)) break;
      total += s;
      out.push([p, total]);
    }
    return out;
  };

  function drawDepth(book) {
    const el = $('depth');
    const w = el.clientWidth || 600;
    const h = el.clientHeight || 300;
    el.setAttribute('viewBox', `0 0 ${w} ${h}`);
    el.textContent = '';
    const levels = (side) => side.map(([p, s]) => [Number(p), Number(s)]);
    const bids = levels(book.bids);
    const asks = levels(book.asks);
    el.dataset.bestBid = book.bids.length ? book.bids[0][0] : '';
    el.dataset.bestAsk = book.asks.length ? book.asks[0][0] : '';
    if (!bids.length || !asks.length) {
      el.dataset.bids = String(bids.length);
      el.dataset.asks = String(asks.length);
      el.append(svg('text', { x: 12, y: 24 }, 'One side of the book is empty.'));
      return;
    }
    const mid = (bids[0][0] + asks[0][0]) / 2;
    const b = cumulative(bids, (p) => p >= mid * 0.99);
    const a = cumulative(asks, (p) => p <= mid * 1.01);
    el.dataset.bids = String(b.length);
    el.dataset.asks = String(a.length);
    // Symmetric about the mid, as far as the levels shown reach.
    const reach = Math.max(mid - b[b.length - 1][0], a[a.length - 1][0] - mid, mid * 0.0005);
    const [x0, x1] = [mid - reach, mid + reach];
    const top = Math.max(b[b.length - 1][1], a[a.length - 1][1]) * 1.08;
    const m = { l: 8, r: 64, t: 10, b: 22 };
    const X = (p) => m.l + ((p - x0) / (x1 - x0)) * (w - m.l - m.r);
    const Y = (v) => m.t + (1 - v / top) * (h - m.t - m.b);
    const path = (pts, edge) => {
      let d = `M${X(pts[0][0])},${Y(0)}`;
      pts.forEach(([p, c], k) => {
        d += ` L${X(p)},${Y(c)}`;
        const next = k + 1 < pts.length ? pts[k + 1][0] : edge;
        d += ` L${X(next)},${Y(c)}`;
      });
      return `${d} L${X(edge)},${Y(0)} Z`;
    };
    el.append(
      svg('line', { class: 'axis', x1: m.l, x2: w - m.r, y1: Y(0), y2: Y(0) }),
      svg('line', { class: 'axis', x1: w - m.r, x2: w - m.r, y1: m.t, y2: Y(0) }),
      svg('path', { class: 'bids', d: path(b, x0) }),
      svg('path', { class: 'asks', d: path(a, x1) }),
      svg('line', { class: 'mid', x1: X(mid), x2: X(mid), y1: m.t, y2: Y(0) }),
    );
    const digits = priceDigits(mid);
    for (const [p, anchor] of [[x0, 'start'], [mid, 'middle'], [x1, 'end']]) {
      el.append(svg('text', { x: Math.min(X(p), w - m.r), y: h - 6, 'text-anchor': anchor }, p.toFixed(digits)));
    }
    for (const v of [top / 2, top / 1.08]) {
      el.append(svg('text', { x: w - m.r + 6, y: Y(v) + 4 }, fmt(v, 4)));
    }
  }

  function showBookFigures(book, stats) {
    const figures = $('book-figures');
    figures.textContent = '';
    const rows = [
      ['best bid', price(book.bids.length ? book.bids[0][0] : '–')],
      ['best ask', price(book.asks.length ? book.asks[0][0] : '–')],
    ];
    if (stats && stats.mid != null) {
      rows.push(
        ['mid', stats.mid],
        ['spread', `${stats.spread} (${fmt(stats.spread_bps, 2)} bps)`],
        ['microprice', fmt(stats.microprice, priceDigits(Number(stats.mid)) + 1)],
        ['imbalance', fmt(stats.imbalance, 3)],
      );
      stats.depth_bps.forEach((bps, k) => {
        rows.push([`depth ±${bps} bps (bid / ask)`, `${fmt(Number(stats.bid_depth[k]), 4)} / ${fmt(Number(stats.ask_depth[k]), 4)}`]);
      });
    }
    for (const [label, value] of rows) {
      const d = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = value;
      d.append(b, label);
      figures.append(d);
    }
  }

  async function loadBook() {
    const asked = ++bookAsked;
    const panel = $('book-panel');
    const q = new URLSearchParams({ exchange: state.exchange, instrument: state.instrument });
    let book;
    try {
      book = (await getJson(`/api/v1/book?${q}&depth=2000`)).body;
    } catch (e) {
      if (asked === bookAsked) panel.hidden = true;
      return;
    }
    const to = toSec(book.time) + 1;
    const range = new URLSearchParams({ from: iso(to - 900), to: iso(to), limit: '100000' });
    const [stats, series] = await Promise.all([
      getJson(`/api/v1/book/stats?${q}`).then((r) => r.body, () => null),
      getJson(`/api/v1/book/series?${q}&${range}`).then((r) => r.body.series, () => []),
    ]);
    if (asked !== bookAsked) return;
    panel.hidden = false;
    $('book-note').textContent = `${state.exchange} ${state.instrument} · ${book.source} · ${when(book.time)}`;
    showBookFigures(book, stats);
    drawDepth(book);
    // One point a second (the chart's time axis is in seconds): the last.
    const points = [];
    for (const r of series) {
      if (r.spread_bps == null) continue;
      const point = { time: toSec(r.time), value: r.spread_bps };
      if (points.length && points[points.length - 1].time === point.time) points[points.length - 1] = point;
      else points.push(point);
    }
    spreadSeries.setData(points);
    spreadChart.timeScale().fitContent();
    spreadEl.dataset.points = String(points.length);
  }

  // ---- statistics ----
  let statsRows = [];
  let statsSort = { key: 'rank', asc: true };

  async function loadStats() {
    const table = $('stats');
    try {
      const q = new URLSearchParams({ window: state.statsWindow });
      statsRows = (await getJson(`/api/v1/stats?${q}`)).body;
      $('stats-note').textContent = `${state.statsWindow} to each instrument's latest candle; ranked by σ of returns, with some volume and at least 5 candles and a tenth of the window's (others: –)`;
    } catch (e) {
      statsRows = [];
      $('stats-note').textContent = e.message;
    }
    renderStats();
    table.dataset.rows = String(statsRows.length);
    // Whether a column hides behind the panel's scroll bar (tests read it).
    const box = table.parentElement;
    table.dataset.clipped = String(table.scrollWidth > box.clientWidth + 1);
  }

  function renderStats() {
    const value = (r, k) => (k === 'name' ? keyOf(r) : k === 'close' || k === 'volume' ? Number(r[k]) : r[k]);
    const rows = statsRows.slice().sort((a, b) => {
      const x = value(a, statsSort.key);
      const y = value(b, statsSort.key);
      const c = x == null ? 1 : y == null ? -1 : x < y ? -1 : x > y ? 1 : 0;
      return statsSort.asc ? c : -c;
    });
    const body = $('stats').tBodies[0];
    body.textContent = '';
    for (const r of rows) {
      const tr = body.insertRow();
      tr.className = 'pickable';
      tr.title = `${plural(r.candles, `${r.interval} candle`)}, ${when(r.from)} to ${when(r.to)}`;
      const cells = [
        [r.rank == null ? '–' : String(r.rank), 'num'],
        [keyOf(r), ''],
        [price(r.close), 'num'],
        // Coloured by what shows: a return that rounds to 0.00% is neither.
        [pct(r.return), `num ${pct(r.return) === pct(0) ? '' : r.return > 0 ? 'up' : 'down'}`],
        [pct(r.stddev, 3), 'num'],
        [pct(r.realized_vol, 1), 'num'],
        [fmt(r.price_stddev, 6), 'num'],
        [fmt(Number(r.volume), 4), 'num'],
      ];
      for (const [text, cls] of cells) {
        const td = tr.insertCell();
        td.textContent = text;
        td.className = cls;
      }
      tr.addEventListener('click', () => select(r.exchange, r.instrument));
    }
    for (const th of $('stats').tHead.rows[0].cells) {
      th.classList.toggle('sorted', th.dataset.key === statsSort.key);
      th.classList.toggle('asc', th.dataset.key === statsSort.key && statsSort.asc);
    }
  }

  for (const th of $('stats').tHead.rows[0].cells) {
    th.addEventListener('click', () => {
      const k = th.dataset.key;
      statsSort = { key: k, asc: statsSort.key === k ? !statsSort.asc : k === 'rank' || k === 'name' };
      renderStats();
    });
  }

  // ---- status: connectors, completeness and gaps ----
  async function loadConnectors() {
    const body = $('connectors').tBodies[0];
    try {
      const rows = (await getJson('/api/v1/connectors')).body;
      body.textContent = '';
      if (!rows.length) {
        const td = body.insertRow().insertCell();
        td.colSpan = 5;
        td.textContent = 'No live connectors in this process (serving stored data).';
      }
      for (const c of rows) {
        const tr = body.insertRow();
        const venue = c.note ? `${c.exchange} (${c.note})` : c.exchange;
        const cells = [[venue, ''], [c.state, `state-${c.state}`], [fmt(c.messages, 0), 'num'],
          [fmt(c.reconnects, 0), 'num'], [when(c.last_message), '']];
        for (const [text, cls] of cells) {
          const td = tr.insertCell();
          td.textContent = text;
          td.className = cls;
        }
        if (c.last_error) tr.title = c.last_error;
      }
    } catch (e) {
      problem(`Connectors: ${e.message}`);
    }
  }

  async function loadCompleteness() {
    const i = instruments.find((x) => x.exchange === state.exchange && x.instrument === state.instrument);
    const figures = $('completeness');
    const gaps = $('gaps').tBodies[0];
    if (!i || !i.last_trade_time) return;
    const end = toSec(i.last_trade_time);
    const to = Math.ceil((end + 1) / 60) * 60;
    const q = new URLSearchParams({
      exchange: i.exchange, instrument: i.instrument, interval: '1m', from: iso(to - 86400), to: iso(to),
    });
    $('completeness-title').textContent = `${keyOf(i)}, the 24 hours to its last trade`;
    try {
      const c = (await getJson(`/api/v1/completeness?${q}`)).body;
      figures.textContent = '';
      const first = c.from ? toSec(c.from) : null;
      for (const [label, value] of [
        ['1m candles', `${fmt(c.candles, 0)} / ${fmt(c.expected, 0)}`],
        ['coverage', c.coverage_pct == null ? '–' : `${c.coverage_pct.toFixed(2)}%`],
        ['gaps open', String(c.open_gaps)],
        ['gaps recorded', String(c.gaps.length)],
        ['last trade', when(c.last_message_time)],
      ]) {
        const d = document.createElement('div');
        const b = document.createElement('b');
        b.textContent = value;
        d.append(b, label);
        figures.append(d);
      }
      figures.dataset.coverage = c.coverage_pct == null ? '' : String(c.coverage_pct);
      figures.dataset.query = q.toString();
      figures.dataset.candles = String(c.candles);
      figures.dataset.expected = String(c.expected);
      figures.title = first ? `from ${iso(first)}` : '';
      gaps.textContent = '';
      if (!c.gaps.length) {
        const td = gaps.insertRow().insertCell();
        td.colSpan = 5;
        td.textContent = 'No gaps recorded in this range.';
      }
      for (const g of c.gaps.slice(0, 50)) {
        const tr = gaps.insertRow();
        for (const text of [when(g.from_ts), when(g.to_ts), g.kind || 'trades', g.state, g.reason]) {
          tr.insertCell().textContent = text;
        }
      }
    } catch (e) {
      figures.textContent = e.message;
    }
  }

  // ---- alerts: the latest firings and how their deliveries went ----
  async function loadAlerts() {
    const body = $('firings').tBodies[0];
    try {
      const [rules, firings] = await Promise.all([
        getJson('/api/v1/alerts'),
        getJson('/api/v1/alerts/firings?limit=50'),
      ]);
      $('alerts-note').textContent = `${rules.body.length} rule${rules.body.length === 1 ? '' : 's'}`;
      body.textContent = '';
      if (!firings.body.length) {
        const td = body.insertRow().insertCell();
        td.colSpan = 4;
        td.textContent = 'Nothing has fired.';
      }
      for (const f of firings.body) {
        const tr = body.insertRow();
        const d = f.deliveries;
        const delivered = d == null ? 'pending'
          : d.length === 0 ? 'log only'
            : d.map((x) => `${x.channel} ${x.ok ? '✓' : `✗ ${x.error || ''}`}`).join(', ');
        const cells = [[when(f.fired_at), ''], [f.firing.rule || f.rule_id, ''], [f.firing.message || '', 'wrap'], [delivered, '']];
        for (const [text, cls] of cells) {
          const td = tr.insertCell();
          td.textContent = text;
          td.className = cls;
        }
      }
      $('firings').dataset.rows = String(firings.body.length);
    } catch (e) {
      $('alerts-note').textContent = e.message;
    }
  }

  // ---- controls ----
  function fillSelect(el, values, chosen, label = (v) => v) {
    el.textContent = '';
    for (const v of values) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = label(v);
      o.selected = v === chosen;
      el.append(o);
    }
  }

  function select(exchange, instrument) {
    state.exchange = exchange;
    state.instrument = instrument;
    $('instrument').value = `${exchange}:${instrument}`;
    saveState();
    loadChart();
    loadCompleteness();
    loadBook();
  }

  $('instrument').addEventListener('change', (e) => {
    const [ex, inst] = e.target.value.split(':');
    select(ex, inst);
  });
  $('interval').addEventListener('change', (e) => {
    state.interval = e.target.value;
    saveState();
    loadChart();
  });
  $('compare-window').addEventListener('change', (e) => {
    state.compareWindow = e.target.value;
    saveState();
    loadCompare();
  });
  $('compare-filter').addEventListener('input', renderPick);
  $('stats-window').addEventListener('change', (e) => {
    state.statsWindow = e.target.value;
    $('stats-custom').value = '';
    saveState();
    loadStats();
  });
  $('stats-custom').addEventListener('change', (e) => {
    const w = e.target.value.trim();
    if (!windowSecs(w)) {
      problem(`Window "${w}": write a number and a unit s, m, h, d or w, such as 3d`);
      return;
    }
    problem(null);
    state.statsWindow = w;
    saveState();
    loadStats();
  });

  async function start() {
    fillSelect($('interval'), Object.keys(INTERVALS), state.interval);
    fillSelect($('compare-window'), WINDOWS, state.compareWindow);
    fillSelect($('stats-window'), WINDOWS.includes(state.statsWindow) ? WINDOWS : WINDOWS.concat(state.statsWindow), state.statsWindow);
    try {
      instruments = (await getJson('/api/v1/instruments?with_data=true')).body;
    } catch (e) {
      problem(`Instruments: ${e.message}`);
      return;
    }
    instruments.sort((a, b) => (b.last_trade_time || '').localeCompare(a.last_trade_time || '') || keyOf(a).localeCompare(keyOf(b)));
    if (!instruments.length) {
      problem('No data stored yet: run `candlekeep run` with sources, `candlekeep demo`, or `candlekeep replay`.');
      loadConnectors();
      loadAlerts();
      return;
    }
    const known = (ex, inst) => instruments.some((i) => i.exchange === ex && i.instrument === inst);
    if (!known(state.exchange, state.instrument)) {
      state.exchange = instruments[0].exchange;
      state.instrument = instruments[0].instrument;
    }
    fillSelect($('instrument'), instruments.map(keyOf), `${state.exchange}:${state.instrument}`);
    state.compare = state.compare.filter((k) => instruments.some((i) => keyOf(i) === k));
    if (!state.compare.length) {
      // The same base currency across venues, else the most recent few.
      const base = state.instrument.split('-')[0];
      const same = instruments.filter((i) => i.instrument.split('-')[0] === base).map(keyOf);
      state.compare = (same.length > 1 ? same : instruments.map(keyOf)).slice(0, 4);
    }
    saveState();
    live.start();
    renderPick();
    await Promise.all([loadChart(), loadCompare(), loadStats(), loadConnectors(), loadCompleteness(), loadAlerts(), loadBook()]);
    document.body.dataset.readyMs = String(Math.round(performance.now()));
    document.body.dataset.ready = 'true';
    setInterval(loadConnectors, 5000);
    setInterval(loadBook, 2000);
    setInterval(loadAlerts, 10000);
    setInterval(loadCompleteness, 30000);
    setInterval(loadStats, 60000);
  }

  if (!LC) {
    problem('The chart library did not load.');
  } else {
    start();
  }
})();
