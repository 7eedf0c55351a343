/**
 * Issue #11, defect 7: "--no-encrypt has no integrity after the handshake: an on-path
 * attacker can inject a --delete session or file contents."
 *
 * The fix drops the unencrypted mode: after the handshake every byte is in an
 * AES-128-GCM record, whichever record layer runs (the data plane's or node:crypto's:
 * the suite runs once each way, FERRY_NATIVE=0 the second time), and `--no-encrypt` is
 * refused with a one-line usage error. Here an on-path attacker injects, after the
 * handshake:
 *   - a bare frame, as the old --no-encrypt stream would have carried it;
 *   - a well-formed record sealed under a key of its own;
 *   - a copy of an earlier record (a replay);
 * into the channel, and into a real `ferry send` → `ferry recv` session through a
 * tampering TCP proxy. Each must fail the session (FERRY_E_INTEGRITY), deliver nothing
 * from the injection on, and publish no file.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import path from 'node:path';
import { isFerryError } from '../src/core/errors.js';
import { sealRecord } from '../src/secure/record-layer.js';
import { encodeFrame } from '../src/wire/frame.js';
import { HELLO_BYTES } from '../src/wire/hello.js';
import { MsgTypes } from '../src/secure/handshake.js';
import { channelPair, collect, duplexPair } from './support/secure-helpers.js';
import { startRecv, sendTo } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

type Injection = (firstRecord: Buffer) => Buffer;

const injections: [string, Injection][] = [
  // What the old --no-encrypt receiver parsed as a frame: type 0x10, 7 bytes of payload.
  ['a bare frame', () => Buffer.concat(encodeFrame(0x10, Buffer.from('injected')))],
  ['a record under the attacker’s key', () => sealRecord({ key: randomBytes(16), iv: randomBytes(12), seq: 1n }, Buffer.concat(encodeFrame(0x10, Buffer.from('injected'))))],
  ['a replayed record', (first) => Buffer.from(first)],
];

/**
 * A tap on the client→server stream that lets the handshake and the first record
 * through, then, at the first record boundary where `armed()` holds, puts `inject`'s
 * bytes (given the last genuine record, for a replay) into the stream.
 */
function injectAfterFirstRecord(inject: Injection, armed: () => boolean = () => true): (chunk: Buffer) => Buffer | null {
  let hs = true; // still in the handshake: hello, then type(u8) length(u16) messages up to ClientConfirm
  let buf = Buffer.alloc(0);
  let injected = false;
  let helloSeen = false;
  let last: Buffer | null = null;
  return (chunk) => {
    if (injected) return chunk;
    buf = Buffer.concat([buf, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      if (hs) {
        if (!helloSeen) {
          if (buf.length < HELLO_BYTES) break;
          out.push(buf.subarray(0, HELLO_BYTES));
          buf = buf.subarray(HELLO_BYTES);
          helloSeen = true;
          continue;
        }
        if (buf.length < 3 || buf.length < 3 + buf.readUInt16BE(1)) break;
        const n = 3 + buf.readUInt16BE(1);
        if (buf[0] === MsgTypes.CLIENT_CONFIRM) hs = false;
        out.push(buf.subarray(0, n));
        buf = buf.subarray(n);
        continue;
      }
      if (last !== null && armed()) {
        out.push(inject(last), buf);
        buf = Buffer.alloc(0);
        injected = true;
        break;
      }
      if (buf.length < 5 || buf.length < 5 + buf.readUInt16BE(3)) break;
      const n = 5 + buf.readUInt16BE(3);
      last = Buffer.from(buf.subarray(0, n));
      out.push(last);
      buf = buf.subarray(n);
    }
    const ready = Buffer.concat(out);
    return ready.length > 0 ? ready : null;
  };
}

/** Watches the server→client stream: true once the first record after the server's handshake messages passed. */
function serverRecordSeen(): { watch: (chunk: Buffer) => void; seen: () => boolean } {
  let skip = -1; // bytes of hello + ServerShare + ServerConfirm, once known
  let buf = Buffer.alloc(0);
  let total = 0;
  return {
    watch: (chunk) => {
      total += chunk.length;
      if (skip >= 0) return;
      buf = Buffer.concat([buf, chunk]);
      let off = HELLO_BYTES;
      for (let m = 0; m < 2; m++) {
        if (buf.length < off + 3) return;
        off += 3 + buf.readUInt16BE(off + 1);
      }
      skip = off;
    },
    seen: () => skip >= 0 && total > skip,
  };
}

for (const [name, inject] of injections) {
  test(`channel: ${name} injected after the handshake fails the session (FERRY_E_INTEGRITY) and delivers nothing from it on`, async () => {
    const [a, b] = duplexPair(injectAfterFirstRecord(inject));
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    const got: { type: number; payload: Uint8Array }[] = [];
    const done = (async () => {
      for await (const f of s.frames()) got.push(f);
    })().then(() => null, (e: unknown) => e);
    await c.send(0x10, Buffer.from('before'));
    await new Promise((r) => setImmediate(r)); // 'before' goes out as the first record
    await new Promise((r) => setImmediate(r));
    await c.send(0x11, Buffer.from('after')).catch(() => {});
    await c.close().catch(() => {});
    const e = await done;
    assert.ok(isFerryError(e, 'FERRY_E_INTEGRITY'), `expected FERRY_E_INTEGRITY, got ${String(e)}`);
    assert.ok(got.length <= 1, `delivered ${got.length} frames`);
    for (const f of got) assert.deepEqual(Buffer.from(f.payload), Buffer.from('before'));
    assert.ok(!got.some((f) => Buffer.from(f.payload).includes(Buffer.from('injected'))));
    a.destroy();
  });
}

test('the collect helper sees the same failure (sanity: the tap passes an untouched session)', async () => {
  const [a, b] = duplexPair(injectAfterFirstRecord(() => Buffer.alloc(0)));
  const p = channelPair(a, b);
  const [c, s] = await Promise.all([p.client, p.server]);
  const got = collect(s);
  await c.send(0x10, Buffer.from('one'));
  await new Promise((r) => setImmediate(r));
  await c.send(0x11, Buffer.from('two'));
  await c.close();
  assert.deepEqual(await got, [
    { type: 0x10, payload: Buffer.from('one') },
    { type: 0x11, payload: Buffer.from('two') },
  ]);
  a.destroy();
});

test('--no-encrypt is refused by send and recv with a one-line usage error, before any connection', async () => {
  const root = await tmpDir('ferry-issue11-');
  for (const args of [['send', root, '127.0.0.1:9', '--no-encrypt'], ['recv', path.join(root, 'dst'), '--listen', '127.0.0.1:0', '--no-encrypt']]) {
    const r = await runFerry(args, { env: { FERRY_SECRET: 'correct-horse-battery-staple-42' }, timeoutMs: 20_000 });
    assert.equal(r.code, 2, `${args[0]}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /FERRY_E_USAGE: (send|recv): --no-encrypt is no longer supported: every session is encrypted/);
    assert.doesNotMatch(r.stderr, /listening on/);
  }
  assert.equal(existsSync(path.join(root, 'dst')), false);
});

/**
 * A TCP proxy that forwards both ways and, on the client→server side, injects
 * `inject(lastRecord)` at the first record boundary after the receiver's first record.
 */
async function tamperingProxy(targetPort: number, inject: Injection): Promise<{ port: number; close: () => void }> {
  const sockets: Socket[] = [];
  const server = createServer((down) => {
    const up = connect(targetPort, '127.0.0.1');
    sockets.push(down, up);
    // Inject once the receiver has answered with a record (the session is under way).
    const server = serverRecordSeen();
    const tap = injectAfterFirstRecord(inject, server.seen);
    down.on('data', (c: Buffer) => {
      const out = tap(c);
      if (out !== null) up.write(out);
    });
    up.on('data', (c: Buffer) => {
      server.watch(c);
      down.write(c);
    });
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

for (const [name, inject] of injections) {
  test(`ferry send → recv: ${name} injected on the path fails the session and publishes nothing`, { timeout: 60_000 }, async () => {
    const root = await tmpDir('ferry-issue11-');
    const src = path.join(root, 'src');
    await makeTree(src, { 'a.txt': 'aaaa', 'dir/b.bin': randomBytes(200_000) });
    const dst = path.join(root, 'dst');
    const rv = await startRecv(dst, [], {}, 30_000);
    const proxy = await tamperingProxy(rv.port, inject);
    try {
      const s = sendTo(`${src}/`, proxy.port, [], {}, 30_000);
      const [send, recv] = await Promise.all([s.done, rv.done]);
      assert.equal(recv.code, 4, `recv: ${recv.stderr}\nsend: ${send.stderr}`);
      assert.match(recv.stderr, /FERRY_E_INTEGRITY/);
      assert.notEqual(send.code, 0, `send: ${send.stderr}`);
      const published = existsSync(dst) ? readdirSync(dst, { recursive: true }).map(String).filter((f) => !f.startsWith('.ferry')) : [];
      assert.deepEqual(published.filter((f) => f === 'a.txt' || f.endsWith('b.bin')), []);
    } finally {
      proxy.close();
    }
  });
}
