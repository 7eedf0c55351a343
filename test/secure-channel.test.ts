/**
 * The secure channel end to end over TCP and in-memory pairs: handshake, frames
 * both ways, authenticated end, key update, wrong secret, replay,
 * version/magic mismatch, oversized lengths, timeouts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { isFerryError } from '../src/core/errors.js';
import { establishChannel } from '../src/secure/channel.js';
import { encodeMessage, MsgTypes } from '../src/secure/handshake.js';
import { encodeHello, MAGIC } from '../src/wire/hello.js';
import { channelPair, collect, duplexPair, tcpPair } from './support/secure-helpers.js';
import { flushesArriveIntact, isCode, replayFails } from './support/channel-checks.js';

test('TCP loopback: handshake, frames both ways, authenticated end', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    assert.deepEqual(c.sessionBinding, s.sessionBinding);
    assert.equal(c.sessionBinding.length, 32);
    assert.equal(c.info.cipher, 'aes-128-gcm');
    assert.equal(c.info.tx, 'userspace');
    assert.equal(s.info.peer, 'client');
    const big = randomBytes(3 * 1024 * 1024 + 7);
    const got = collect(s);
    const back = collect(c);
    await c.send(0x10, Buffer.from('hello'));
    await c.send(0x11, big);
    await c.send(0x12, [Buffer.from('a'), Buffer.from('bc')]);
    await c.send(0x13, new Uint8Array(0));
    await c.close();
    await s.send(0x20, Buffer.from('reply'));
    await s.close();
    const frames = await got;
    assert.equal(frames.length, 4);
    assert.deepEqual(frames[0], { type: 0x10, payload: Buffer.from('hello') });
    assert.equal(frames[1]!.type, 0x11);
    assert.ok(frames[1]!.payload.equals(big));
    assert.deepEqual(frames[2], { type: 0x12, payload: Buffer.from('abc') });
    assert.deepEqual(frames[3], { type: 0x13, payload: Buffer.alloc(0) });
    assert.deepEqual(await back, [{ type: 0x20, payload: Buffer.from('reply') }]);
    assert.equal(c.bytesSent, 5 + big.length + 3);
    assert.equal(s.bytesReceived, c.bytesSent);
  } finally {
    close();
  }
});

test('two sessions with the same secret get different bindings', async () => {
  const [a1, b1] = duplexPair();
  const [a2, b2] = duplexPair();
  const p1 = channelPair(a1, b1);
  const p2 = channelPair(a2, b2);
  const [c1, , c2] = await Promise.all([p1.client, p1.server, p2.client, p2.server]);
  assert.notDeepEqual(c1.sessionBinding, c2.sessionBinding);
  a1.destroy();
  a2.destroy();
});

test('many small frames share records and arrive in order', async () => {
  let records = 0;
  const [a, b] = duplexPair((chunk) => {
    records += chunk.length;
    return chunk;
  });
  const p = channelPair(a, b);
  const [c, s] = await Promise.all([p.client, p.server]);
  const before = records;
  const got = collect(s);
  for (let i = 0; i < 2000; i++) await c.send(0x10 + (i % 4), Buffer.from(`frame ${i}`));
  await c.close();
  const frames = await got;
  assert.equal(frames.length, 2000);
  for (let i = 0; i < 2000; i++) assert.equal(frames[i]!.payload.toString(), `frame ${i}`);
  // 2000 tiny frames cost far fewer than 2000 records' overhead (22 bytes each).
  assert.ok(records - before < 2000 * 16 + 2000 * 22, `wire bytes ${records - before}`);
  a.destroy();
});

test('key update: with a tiny record limit both sides rekey and data stays intact', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b, { rekeyAfterRecords: 3 }, { rekeyAfterRecords: 3 });
  const [c, s] = await Promise.all([p.client, p.server]);
  const data = randomBytes(800 * 1024);
  const got = collect(s);
  for (let i = 0; i < 40; i++) await c.send(0x10, data.subarray(i * 20480, (i + 1) * 20480));
  await c.close();
  const frames = await got;
  assert.deepEqual(Buffer.concat(frames.map((f) => f.payload)), data);
  assert.ok(c.keyUpdates.tx >= 3, `tx key updates ${c.keyUpdates.tx}`);
  assert.equal(s.keyUpdates.rx, c.keyUpdates.tx);
  a.destroy();
});

test('the encrypted stream does not contain the plaintext', async () => {
  const seen: Buffer[] = [];
  const [a, b] = duplexPair((c) => (seen.push(Buffer.from(c)), c));
  const p = channelPair(a, b);
  const [c, s] = await Promise.all([p.client, p.server]);
  const got = collect(s);
  await c.send(0x10, Buffer.from('visible payload'));
  await c.close();
  await got;
  assert.ok(!Buffer.concat(seen).includes(Buffer.from('visible payload')));
  assert.ok(!Buffer.concat(seen).includes(Buffer.from('correct horse')));
  a.destroy();
});

test('wrong secret: both sides fail FERRY_E_AUTH, the server never sees a frame', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b, { secret: 'secret one' }, { secret: 'secret two' });
    const [cr, sr] = await Promise.allSettled([p.client, p.server]);
    assert.equal(cr.status, 'rejected');
    assert.equal(sr.status, 'rejected');
    isCode('FERRY_E_AUTH', /secrets differ/)((cr as PromiseRejectedResult).reason);
    isCode('FERRY_E_AUTH', /secrets differ/)((sr as PromiseRejectedResult).reason);
    assert.match((cr as PromiseRejectedResult).reason.message, /server/);
    assert.match((sr as PromiseRejectedResult).reason.message, /client/);
  } finally {
    close();
  }
});

test('replay of a recorded session against a new server fails AUTH and delivers nothing', async () => {
  await replayFails({ secret: 'correct horse battery staple' });
});

test('version mismatch: a newer client is refused with FERRY_E_VERSION and told why', async () => {
  const [a, b] = duplexPair();
  const server = establishChannel(b, { role: 'server', secret: 's', peer: 'client', ktls: 'off' });
  const replies: Buffer[] = [];
  a.on('data', (c: Buffer) => replies.push(c));
  const ended = new Promise((r) => a.on('end', r));
  a.write(encodeHello(2));
  await assert.rejects(server, isCode('FERRY_E_VERSION', /version 2.*speaks 1/));
  await ended;
  const reply = Buffer.concat(replies);
  assert.deepEqual(reply.subarray(0, 10), encodeHello(1));
  assert.equal(reply[10], MsgTypes.NOTICE);
  assert.match(reply.subarray(13).toString(), /version 1/);
});

test('version mismatch: a client talking to a newer server fails with FERRY_E_VERSION', async () => {
  const [a, b] = duplexPair();
  const client = establishChannel(a, { role: 'client', secret: 's', peer: 'server', ktls: 'off' });
  b.on('data', () => {});
  b.write(encodeHello(7));
  await assert.rejects(client, isCode('FERRY_E_VERSION', /version 7/));
  b.destroy();
});

test('an HTTP client is recognised from its first bytes and gets a readable line', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const server = establishChannel(b, { role: 'server', secret: 's', peer: 'client', ktls: 'off' });
    const replies: Buffer[] = [];
    a.on('data', (c: Buffer) => replies.push(c));
    const ended = new Promise((r) => a.on('end', r));
    a.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await assert.rejects(server, isCode('FERRY_E_VERSION', /HTTP/));
    await ended;
    assert.match(Buffer.concat(replies).toString('latin1'), /ferry server/);
  } finally {
    close();
  }
});

test('a ferry client reaching a non-ferry service fails FERRY_E_VERSION', async () => {
  const [a, b] = duplexPair();
  const client = establishChannel(a, { role: 'client', secret: 's', peer: 'server', ktls: 'off' });
  b.on('data', () => {});
  b.write('SSH-2.0-OpenSSH_9.6\r\n');
  await assert.rejects(client, isCode('FERRY_E_VERSION', /ssh/));
  b.destroy();
});

test('oversized handshake message length is refused before it is buffered', async () => {
  const [a, b] = duplexPair();
  const server = establishChannel(b, { role: 'server', secret: 's', peer: 'client', ktls: 'off', handshakeTimeoutMs: 5000 });
  a.on('data', () => {});
  // hello, then a ClientShare announcing 65535 bytes: refused at once, not after 64 KiB or the timeout.
  a.write(Buffer.concat([encodeHello(), Buffer.from([MsgTypes.CLIENT_SHARE, 0xff, 0xff])]));
  await assert.rejects(server, isCode('FERRY_E_PROTOCOL', /65535-byte handshake message/));
  a.destroy();
});

test('a raw frame written under the channel after authentication is an integrity failure, not a frame', async () => {
  // Authenticate normally, then write a bare 2 GiB frame header under the channel: it is
  // not a record, so it fails as one (there is no unencrypted mode to parse it as a frame).
  const [a, b] = duplexPair();
  const p = channelPair(a, b);
  const [, s] = await Promise.all([p.client, p.server]);
  const it = collect(s);
  a.write(Buffer.from([0x10, 0x80, 0x00, 0x00, 0x00]));
  await assert.rejects(it, isCode('FERRY_E_INTEGRITY', /malformed record header/));
  a.destroy();
});

test('a frame over the cap inside a valid encrypted record is a protocol error', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b, {}, { maxFramePayload: 1000 });
  const [c, s] = await Promise.all([p.client, p.server]);
  const it = collect(s);
  await c.send(0x10, Buffer.alloc(1001));
  await assert.rejects(it, isCode('FERRY_E_PROTOCOL', /1001 bytes exceeds the 1000-byte limit/));
  a.destroy();
});

test('idle peer during the handshake: FERRY_E_TIMEOUT naming the peer', async () => {
  const [a, b] = duplexPair();
  a.on('data', () => {});
  const server = establishChannel(b, { role: 'server', secret: 's', peer: 'sleepy', ktls: 'off', handshakeTimeoutMs: 150 });
  await assert.rejects(server, isCode('FERRY_E_TIMEOUT', /sleepy/));
  a.destroy();
});

test('idle peer after the handshake: frames() fails FERRY_E_TIMEOUT', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b, {}, { idleTimeoutMs: 150 });
  const [, s] = await Promise.all([p.client, p.server]);
  await assert.rejects(collect(s), isCode('FERRY_E_TIMEOUT', /client: no progress/));
  a.destroy();
});

test('reserved frame types cannot be sent by the transfer layer', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b);
  const [c] = await Promise.all([p.client, p.server]);
  await assert.rejects(c.send(0x00, Buffer.alloc(0)), isCode('FERRY_E_INTERNAL'));
  await assert.rejects(c.send(0x0f, Buffer.alloc(0)), isCode('FERRY_E_INTERNAL'));
  a.destroy();
});

test('magic is 8 bytes starting with 0x89', () => {
  assert.equal(MAGIC.length, 8);
  assert.equal(MAGIC[0], 0x89);
  assert.equal(encodeMessage(1, Buffer.alloc(2)).length, 5);
});

test('connection refused surfaces as an error from the socket, not a hang', async () => {
  const sock = connect(1, '127.0.0.1');
  sock.on('error', () => {});
  await assert.rejects(
    establishChannel(sock, { role: 'client', secret: 's', peer: '127.0.0.1:1', ktls: 'off', handshakeTimeoutMs: 2000 }),
    (e: unknown) => isFerryError(e, 'FERRY_E_CONNECT'),
  );
});

test('backpressure: a receiver that stops reading stops the sender, which then times out', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b, { idleTimeoutMs: 300 }, {});
  const [c] = await Promise.all([p.client, p.server]); // the server never iterates frames()
  const frame = Buffer.alloc(1024 * 1024);
  let sent = 0;
  await assert.rejects(
    (async () => {
      for (let i = 0; i < 200; i++) {
        await c.send(0x10, frame);
        sent++;
      }
    })(),
    isCode('FERRY_E_TIMEOUT', /server: no progress/),
  );
  // The receiver buffers at most about 16 MiB of frames before it stops reading.
  assert.ok(sent < 40, `sender got ${sent} MiB out before blocking`);
  a.destroy();
});

test('half-close: after the peer has closed its direction we can still send', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    const back = collect(c);
    await c.send(0x10, Buffer.from('request'));
    await c.close();
    const got = await collect(s); // ends only after the client's END (and FIN) arrived
    assert.equal(got.length, 1);
    await new Promise((r) => setTimeout(r, 50));
    await s.send(0x20, Buffer.from('late reply'));
    await s.close();
    assert.deepEqual(await back, [{ type: 0x20, payload: Buffer.from('late reply') }]);
  } finally {
    close();
  }
});

test('records that arrive in the same read as the last handshake message are not lost', async () => {
  let n = 0;
  let held: Buffer | null = null;
  const [a, b] = duplexPair((chunk) => {
    const i = n++;
    if (i === 1) {
      held = Buffer.from(chunk); // ClientConfirm: hold it back ...
      return null;
    }
    if (held) {
      const out = Buffer.concat([held, chunk]); // ... and deliver it glued to the first records
      held = null;
      return out;
    }
    return chunk;
  });
  const p = channelPair(a, b);
  const c = await p.client;
  await c.send(0x10, Buffer.from('first frame'));
  await c.send(0x11, Buffer.from('second frame'));
  await c.close();
  const s = await p.server;
  assert.deepEqual(await collect(s), [
    { type: 0x10, payload: Buffer.from('first frame') },
    { type: 0x11, payload: Buffer.from('second frame') },
  ]);
  a.destroy();
});

test('a payload may be reused as soon as send() resolves (small and large)', async () => {
  {
    const [a, b] = duplexPair();
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    const got = collect(s);
    // One buffer, overwritten after every send: what arrives must be what was sent then.
    const buf = Buffer.alloc(300 * 1024);
    const sent: Buffer[] = [];
    for (const [i, size] of [10, 70_000, 5, 300 * 1024, 17, 65_536].entries()) {
      buf.fill(i + 1, 0, size);
      sent.push(Buffer.from(buf.subarray(0, size)));
      await c.send(0x10, [Buffer.from([i]), buf.subarray(0, size)]);
      buf.fill(0xee); // the next frame's bytes, or garbage: must not leak into this one
    }
    await c.close();
    const frames = await got;
    assert.equal(frames.length, sent.length);
    frames.forEach((f, i) => {
      assert.equal(f.payload[0], i);
      assert.ok(f.payload.subarray(1).equals(sent[i]!), `frame ${i} was changed after send()`);
    });
    a.destroy();
  }
});

test('TCP: many flushes of varying size arrive intact and in order, also under backpressure (sealed-output buffers are reused)', async () => {
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    // The receiver starts reading only after a while, so that writes queue up behind a
    // full socket: a sealed buffer reused before its write completed would show here.
    await flushesArriveIntact(c, s);
  } finally {
    close();
  }
});
