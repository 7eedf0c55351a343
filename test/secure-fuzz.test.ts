/**
 * Bounded, seeded fuzzing of everything that parses peer bytes: the server and
 * client handshakes and the record opener. Random and mutated inputs must end in a
 * FerryError with an expected code, never a crash, a hang or another exception.
 * The seed and iteration are in every failure message, so a failure reproduces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../src/core/errors.js';
import { establishChannel } from '../src/secure/channel.js';
import { RecordOpener, RecordSealer } from '../src/secure/record-layer.js';
import { channelPair, duplexPair, prng } from './support/secure-helpers.js';

const HANDSHAKE_CODES = new Set(['FERRY_E_VERSION', 'FERRY_E_PROTOCOL', 'FERRY_E_AUTH', 'FERRY_E_CONNECT', 'FERRY_E_TIMEOUT']);

function mutate(rnd: () => number, input: Buffer): Buffer {
  const out = Buffer.from(input);
  const kind = Math.floor(rnd() * 4);
  if (kind === 0) {
    const n = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < n; k++) {
      const i = Math.floor(rnd() * out.length);
      out[i] = out[i]! ^ (1 << Math.floor(rnd() * 8));
    }
    return out;
  }
  if (kind === 1) return out.subarray(0, Math.floor(rnd() * out.length));
  if (kind === 2) {
    const i = Math.floor(rnd() * out.length);
    out[i] = Math.floor(rnd() * 256);
    return out;
  }
  const i = Math.floor(rnd() * out.length);
  const junk = Buffer.alloc(1 + Math.floor(rnd() * 8));
  for (let k = 0; k < junk.length; k++) junk[k] = Math.floor(rnd() * 256);
  return Buffer.concat([out.subarray(0, i), junk, out.subarray(i)]);
}

async function recordSession(): Promise<{ clientBytes: Buffer; serverBytes: Buffer }> {
  const c2s: Buffer[] = [];
  const s2c: Buffer[] = [];
  const [a, b] = duplexPair((c) => (c2s.push(Buffer.from(c)), c), (c) => (s2c.push(Buffer.from(c)), c));
  const p = channelPair(a, b, { secret: 'fuzz' }, { secret: 'fuzz' });
  await Promise.all([p.client, p.server]);
  a.destroy();
  return { clientBytes: Buffer.concat(c2s), serverBytes: Buffer.concat(s2c) };
}

async function feed(role: 'client' | 'server', input: Buffer, where: string): Promise<void> {
  const [a, b] = duplexPair();
  a.on('data', () => {});
  const ch = establishChannel(b, { role, secret: 'fuzz', peer: 'fuzzer', ktls: 'off', handshakeTimeoutMs: 2000, idleTimeoutMs: 2000 });
  a.end(input);
  try {
    const c = await ch;
    // A mutation that still authenticates is impossible; if it ever happens, the test says where.
    c.destroy();
    assert.fail(`${where}: mutated handshake was accepted`);
  } catch (e) {
    assert.ok(isFerryError(e) && HANDSHAKE_CODES.has(e.code), `${where}: unexpected ${String((e as Error)?.stack ?? e)}`);
  } finally {
    a.destroy();
  }
}

test('fuzz: server handshake against random and mutated client bytes', async () => {
  const seed = 20261121;
  const rnd = prng(seed);
  const { clientBytes } = await recordSession();
  for (let iter = 0; iter < 150; iter++) {
    let input: Buffer;
    if (iter % 3 === 0) {
      input = Buffer.alloc(Math.floor(rnd() * 120));
      for (let i = 0; i < input.length; i++) input[i] = Math.floor(rnd() * 256);
      if (iter % 2 === 0) input = Buffer.concat([clientBytes.subarray(0, 10), input]);
    } else {
      input = mutate(rnd, clientBytes);
    }
    await feed('server', input, `seed ${seed} iteration ${iter}`);
  }
});

test('fuzz: client handshake against random and mutated server bytes', async () => {
  const seed = 4242;
  const rnd = prng(seed);
  const { serverBytes } = await recordSession();
  for (let iter = 0; iter < 100; iter++) {
    const input = iter % 4 === 0 ? randomBytes(Math.floor(rnd() * 100)) : mutate(rnd, serverBytes);
    await feed('client', input, `seed ${seed} iteration ${iter}`);
  }
});

test('fuzz: record opener against random and mutated records', () => {
  const seed = 77;
  const rnd = prng(seed);
  const ts = { key: randomBytes(16), iv: randomBytes(12), seq: 0n };
  const valid = new RecordSealer(ts).seal([randomBytes(40000)]);
  for (let iter = 0; iter < 1500; iter++) {
    let input: Buffer;
    if (iter % 3 === 0) {
      input = Buffer.alloc(Math.floor(rnd() * 200));
      for (let i = 0; i < input.length; i++) input[i] = Math.floor(rnd() * 256);
      if (iter % 2 === 0 && input.length > 3) input.set([0x17, 0x03, 0x03], 0);
    } else {
      input = mutate(rnd, valid);
    }
    const o = new RecordOpener({ ...ts }, { peer: 'fuzzer' });
    let bytes = 0;
    try {
      for (let off = 0; off < input.length; ) {
        const n = 1 + Math.floor(rnd() * 5000);
        o.push(input.subarray(off, off + n));
        off += n;
        for (let c = o.next(); c !== null; c = o.next()) bytes += c.length;
      }
    } catch (e) {
      assert.ok(isFerryError(e, 'FERRY_E_INTEGRITY'), `seed ${seed} iteration ${iter}: ${String(e)}`);
    }
    assert.ok(bytes <= 40000, `seed ${seed} iteration ${iter}: more content than was sealed`);
  }
});
