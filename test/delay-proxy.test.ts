/**
 * The delaying proxy behaves like a link: a round trip costs at least 2 × delay,
 * bytes arrive intact and in order in both directions over parallel connections
 * (also when rate-limited and the in-flight buffer is tiny, which exercises
 * pausing), and a cut delivers exactly N bytes and then closes both ends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { startProxy } from './support/delay-proxy.js';

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

function echoServer(): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

test('a ping-pong round trip takes at least 2 × delay', { timeout: 10_000 }, async () => {
  const server = echoServer();
  const port = await listen(server);
  const delayMs = 25;
  const proxy = await startProxy({ targetPort: port, delayMs });
  const s = await connectTo(proxy.port);
  try {
    const rtts: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      const got = new Promise<Buffer>((r) => s.once('data', r));
      s.write(Buffer.from([i]));
      const b = await got;
      rtts.push(performance.now() - t0);
      assert.equal(b[0], i);
    }
    for (const rtt of rtts) assert.ok(rtt >= 2 * delayMs, `rtt ${rtt.toFixed(1)} ms < ${2 * delayMs} ms`);
  } finally {
    s.destroy();
    await proxy.close();
    server.close();
  }
});

test('bytes arrive intact and in order, both ways, parallel connections, rate-limited', { timeout: 20_000 }, async () => {
  const server = echoServer();
  const port = await listen(server);
  // 8 MB/s with 5 ms delay: a 40 KB in-flight cap, far below the data, so the
  // proxy must pause and resume its sources many times.
  const proxy = await startProxy({ targetPort: port, delayMs: 5, rateBytesPerSec: 8_000_000 });
  try {
    const runs = [0, 1, 2].map(async () => {
      const data = randomBytes(300_000 + Math.floor(Math.random() * 1000));
      const s = await connectTo(proxy.port);
      const h = createHash('sha256');
      let n = 0;
      const done = new Promise<void>((resolve, reject) => {
        s.on('data', (b: Buffer) => {
          h.update(b);
          n += b.length;
        });
        s.on('end', () => resolve());
        s.on('error', reject);
      });
      // Write in odd-sized pieces, then half-close: the echo must come back whole.
      for (let off = 0; off < data.length; off += 7777) s.write(data.subarray(off, off + 7777));
      s.end();
      await done;
      s.destroy();
      assert.equal(n, data.length);
      assert.equal(h.digest('hex'), createHash('sha256').update(data).digest('hex'));
      return data.length;
    });
    const sizes = await Promise.all(runs);
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.equal(proxy.bytesUp, total);
    assert.equal(proxy.bytesDown, total);
    assert.equal(proxy.connections, 3);
  } finally {
    await proxy.close();
    server.close();
  }
});

test('cutAfterBytes delivers exactly N bytes, then closes both ends', { timeout: 10_000 }, async () => {
  const N = 100_000;
  const received: Buffer[] = [];
  let serverClosed!: () => void;
  const serverSaw = new Promise<void>((r) => (serverClosed = r));
  const server = createServer((s) => {
    s.on('data', (b: Buffer) => received.push(b));
    s.on('error', () => {});
    s.on('close', () => serverClosed());
  });
  const port = await listen(server);
  const proxy = await startProxy({ targetPort: port, delayMs: 2, cutAfterBytes: N });
  try {
    const data = randomBytes(1_000_000);
    const s = await connectTo(proxy.port);
    const clientClosed = new Promise<void>((r) => s.on('close', () => r()));
    s.on('error', () => {});
    s.write(data);
    await Promise.all([serverSaw, clientClosed]);
    const got = Buffer.concat(received);
    assert.equal(got.length, N);
    assert.ok(got.equals(data.subarray(0, N)), 'the first N bytes, unchanged');
    assert.equal(proxy.bytesUp, N);
  } finally {
    await proxy.close();
    server.close();
  }
});

test('cutAfterBytesDown delivers exactly N server→client bytes', { timeout: 10_000 }, async () => {
  const N = 50_000;
  const data = randomBytes(500_000);
  const server = createServer((s) => {
    s.on('error', () => {});
    s.end(data);
  });
  const port = await listen(server);
  const proxy = await startProxy({ targetPort: port, delayMs: 2, cutAfterBytesDown: N });
  try {
    const s = await connectTo(proxy.port);
    const chunks: Buffer[] = [];
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('error', () => {});
    // The client is half-open capable: the proxy's FIN after N bytes ends it.
    await new Promise<void>((r) => s.on('end', () => r()));
    s.destroy();
    const got = Buffer.concat(chunks);
    assert.equal(got.length, N);
    assert.ok(got.equals(data.subarray(0, N)));
  } finally {
    await proxy.close();
    server.close();
  }
});
