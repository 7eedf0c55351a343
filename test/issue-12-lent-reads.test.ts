/**
 * Issue #12, receive side: socket reads land in one reused buffer (secure/socket-reads.ts),
 * so every layer above must copy what it keeps before the next read overwrites it. Each
 * test feeds bytes through one buffer that is overwritten after every push, the way the
 * socket does, and checks that nothing that came out changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { FrameDecoder, encodeFrame } from '../src/wire/frame.js';
import { RecordOpener, RecordSealer } from '../src/secure/record-layer.js';
import { readIntoBuffer } from '../src/secure/socket-reads.js';
import type { TrafficSecret } from '../src/secure/traffic-secret.js';
import { channelPair, collect, tcpPair } from './support/secure-helpers.js';

/** Deterministic chunk sizes in [1, max]. */
function* sizes(seed: number, max: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield 1 + (x % max);
  }
}

test('lent chunks: frames from a FrameDecoder stay intact when the read buffer is overwritten', () => {
  const payloads = [0, 1, 4, 5, 100, 4095, 4096, 30_000, 65_535, 65_536, 70_000, 300_000].map((n) => randomBytes(n));
  const stream = Buffer.concat(payloads.flatMap((p, i) => encodeFrame(0x10 + i, p)));
  const d = new FrameDecoder({ borrowed: true, maxPayload: 1 << 20 });
  const lent = Buffer.alloc(20_000);
  const got: { type: number; payload: Buffer }[] = [];
  const sz = sizes(7, lent.length);
  for (let off = 0; off < stream.length; ) {
    const n = Math.min(sz.next().value, stream.length - off);
    stream.copy(lent, 0, off, off + n);
    off += n;
    d.push(lent.subarray(0, n));
    for (let f = d.next(); f !== null; f = d.next()) got.push({ type: f.type, payload: f.payload });
    lent.fill(0xee); // the next read overwrites the buffer
  }
  assert.equal(got.length, payloads.length);
  got.forEach((f, i) => {
    assert.equal(f.type, 0x10 + i);
    assert.ok(f.payload.equals(payloads[i]!), `frame ${i} (${payloads[i]!.length} bytes) intact`);
  });
  assert.equal(d.buffered, 0);
});

const ts = (): TrafficSecret => ({ key: Buffer.alloc(16, 7), iv: Buffer.alloc(12, 9), seq: 0n });

test('lent chunks: a RecordOpener reusing its split-record buffer gives every content intact', () => {
  const sealer = new RecordSealer(ts());
  const contents: Buffer[] = [];
  const wire: Buffer[] = [];
  const sz = sizes(3, 16384);
  for (let i = 0; i < 400; i++) {
    const c = randomBytes(sz.next().value);
    contents.push(c);
    wire.push(sealer.seal([c]));
  }
  const stream = Buffer.concat(wire);
  const opener = new RecordOpener(ts(), { borrowed: true });
  const lent = Buffer.alloc(40_000);
  const got: Buffer[] = [];
  const cs = sizes(11, lent.length);
  for (let off = 0; off < stream.length; ) {
    const n = Math.min(cs.next().value, stream.length - off);
    stream.copy(lent, 0, off, off + n);
    off += n;
    opener.push(lent.subarray(0, n));
    for (let c = opener.next(); c !== null; c = opener.next()) got.push(Buffer.from(c)); // the caller copies
    lent.fill(0xee);
  }
  assert.equal(got.length, contents.length);
  got.forEach((c, i) => assert.ok(c.equals(contents[i]!), `record ${i} intact`));
  assert.equal(opener.buffered, 0);
});

test('readIntoBuffer: an accepted socket reads into our buffer, in order, pauses on false and still ends', async () => {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  const data = randomBytes(2 * 1024 * 1024 + 3);
  const own = Buffer.alloc(4096);
  const received: Buffer[] = [];
  let reads = 0;
  let pausedReads = 0;
  let paused = false;
  const done = new Promise<void>((resolve, reject) => {
    srv.once('connection', (s: Socket) => {
      const switched = readIntoBuffer(s, own, (bytes) => {
        assert.equal(bytes.buffer, own.buffer, 'the bytes are in our buffer');
        if (paused) pausedReads++;
        received.push(Buffer.from(bytes));
        if (++reads === 10) {
          paused = true;
          setTimeout(() => {
            paused = false;
            s.resume();
          }, 50);
          return false;
        }
        return true;
      });
      assert.equal(switched, true);
      s.on('end', () => resolve());
      s.on('error', reject);
      s.resume();
    });
  });
  const c = connect(port, '127.0.0.1', () => c.end(data));
  await done;
  srv.close();
  assert.equal(pausedReads, 0, 'no read while paused');
  assert.ok(reads > 10);
  assert.ok(Buffer.concat(received).equals(data));
});

test('readIntoBuffer: not a socket, or bytes already buffered: no switch', async () => {
  const { client, server, close } = await tcpPair();
  try {
    client.write('early');
    await new Promise((r) => setTimeout(r, 50));
    server.pause();
    server.read(0); // let the stream buffer what arrived
    await new Promise((r) => setTimeout(r, 20));
    if (server.readableLength > 0) assert.equal(readIntoBuffer(server, Buffer.alloc(64), () => true), false);
    const { Duplex } = await import('node:stream');
    assert.equal(readIntoBuffer(new Duplex({ read() {} }), Buffer.alloc(64), () => true), false);
  } finally {
    close();
  }
});

test('a channel over TCP delivers frames of every size intact with reused read buffers', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    const got = collect(s);
    const sent: Buffer[] = [];
    const sz = sizes(5, 300_000);
    for (let i = 0; i < 300; i++) {
      const payload = randomBytes(i % 3 === 0 ? sz.next().value : sz.next().value % 200);
      sent.push(payload);
      await c.send(0x10, payload);
    }
    await c.close();
    await s.close();
    const frames = await got;
    assert.equal(frames.length, sent.length);
    frames.forEach((f, i) => assert.ok(f.payload.equals(sent[i]!), `frame ${i} intact`));
  } finally {
    close();
  }
});

test('released assembly buffers are kept for reuse up to what a receiver holds in flight (40 MiB here)', () => {
  const d = new FrameDecoder({ borrowed: true });
  const payload = randomBytes(1_000_000); // assembled in 1 MiB buffers
  const wire = Buffer.concat(encodeFrame(0x15, payload));
  const lent = Buffer.alloc(16384);
  const frames = (): { payload: Buffer; release?: () => void }[] => {
    const out: { payload: Buffer; release?: () => void }[] = [];
    for (let k = 0; k < 40; k++) {
      for (let off = 0; off < wire.length; off += lent.length) {
        const n = wire.copy(lent, 0, off, off + lent.length);
        d.push(lent.subarray(0, n));
        for (let f = d.next(); f !== null; f = d.next()) out.push(f);
      }
    }
    return out;
  };
  const first = frames();
  assert.equal(first.length, 40);
  const old = new Set(first.map((f) => f.payload.buffer));
  for (const f of first) f.release!();
  const second = frames();
  assert.ok(second.every((f) => f.payload.equals(payload)));
  const reused = second.filter((f) => old.has(f.payload.buffer)).length;
  assert.equal(reused, 40, 'every released buffer is reused');
});
