/**
 * An attacker on the wire after the handshake: a flipped bit, a reordered,
 * dropped, duplicated or truncated record, a stream cut mid-record or before the
 * authenticated end. Each must fail FERRY_E_INTEGRITY, destroy the connection and
 * deliver nothing from the fault on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../src/core/errors.js';
import { channelPair, duplexPair } from './support/secure-helpers.js';

/**
 * A tap that reassembles the a→b byte stream into whole records and, once armed,
 * hands each record (numbered from 0 at arming) to `mutate`, which returns what to
 * forward instead. The handshake bytes before the first record pass untouched.
 */
function recordTap(): { tap: (chunk: Buffer) => Buffer | null; arm: (m: Mutation) => void } {
  let buf = Buffer.alloc(0);
  let mutate: Mutation | null = null;
  let index = 0;
  return {
    arm: (m) => {
      mutate = m;
    },
    tap: (chunk) => {
      if (mutate === null) return chunk;
      buf = Buffer.concat([buf, chunk]);
      const out: Buffer[] = [];
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        const len = 5 + buf.readUInt16BE(3);
        out.push(...mutate(Buffer.from(buf.subarray(0, len)), index++));
        buf = buf.subarray(len);
      }
      return Buffer.concat(out);
    },
  };
}

/** Gets each record after arming with its index; returns the bytes to forward. */
type Mutation = (record: Buffer, index: number) => Buffer[];

let held: Buffer | null = null;
const cases: [string, Mutation][] = [
  ['flipped bit', (r, i) => {
    if (i === 1) r[40] = r[40]! ^ 0x04;
    return [r];
  }],
  ['flipped bit in a header', (r, i) => {
    if (i === 1) r[4] = r[4]! ^ 0x01;
    return [r];
  }],
  ['reordered records', (r, i) => {
    if (i === 0) {
      held = r;
      return [];
    }
    if (i === 1) return [r, held!];
    return [r];
  }],
  ['dropped record', (r, i) => (i === 1 ? [] : [r])],
  ['duplicated record', (r, i) => (i === 0 ? [r, r] : [r])],
  ['truncated record (length shortened)', (r, i) => {
    if (i !== 1) return [r];
    const t = Buffer.from(r.subarray(0, r.length - 100));
    t.writeUInt16BE(t.length - 5, 3);
    return [t];
  }],
];

async function run(mutate: Mutation, cutAfter: boolean): Promise<{ delivered: string[]; error: unknown; clientDestroyed: boolean }> {
  const t = recordTap();
  const [a, b] = duplexPair(t.tap);
  const p = channelPair(a, b);
  const [c, s] = await Promise.all([p.client, p.server]);
  const delivered: string[] = [];
  let error: unknown = null;
  let gotFirst!: () => void;
  const first = new Promise<void>((r) => (gotFirst = r));
  const reading = (async () => {
    try {
      for await (const f of s.frames()) {
        delivered.push(f.payload.length > 100 ? `big:${f.payload.length}` : f.payload.toString());
        if (delivered.length === 1) gotFirst();
      }
    } catch (e) {
      error = e;
      gotFirst();
    }
  })();
  await c.send(0x10, Buffer.from('before'));
  await first;
  t.arm(mutate);
  const clientClosed = new Promise<void>((r) => a.once('close', () => r()));
  // One tick: a 50 KB frame (4 records) and a small one, sealed into one write.
  void c.send(0x11, randomBytes(50_000)).catch(() => {});
  void c.send(0x12, Buffer.from('after')).catch(() => {});
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  if (cutAfter) a.end();
  await reading;
  await Promise.race([clientClosed, new Promise((r) => setTimeout(r, 2000))]);
  const clientDestroyed = a.destroyed;
  a.destroy();
  return { delivered, error, clientDestroyed };
}

for (const [name, m] of cases) {
  test(`${name}: FERRY_E_INTEGRITY, connection destroyed, nothing after the fault delivered`, async () => {
    const r = await run(m, false);
    assert.ok(isFerryError(r.error, 'FERRY_E_INTEGRITY'), `got ${String(r.error)}`);
    assert.deepEqual(r.delivered, ['before']);
    assert.ok(r.clientDestroyed, 'the server destroyed the connection');
  });
}

test('stream cut in the middle of a record: FERRY_E_INTEGRITY', async () => {
  const r = await run((rec, i) => (i === 2 ? [rec.subarray(0, rec.length - 30)] : i > 2 ? [] : [rec]), true);
  assert.ok(isFerryError(r.error, 'FERRY_E_INTEGRITY'), `got ${String(r.error)}`);
  assert.match((r.error as Error).message, /cut before the authenticated end/);
  assert.deepEqual(r.delivered.slice(0, 1), ['before']);
  assert.ok(!r.delivered.includes('after'));
});

test('stream cut between records, before the authenticated end: FERRY_E_INTEGRITY', async () => {
  const r = await run((rec) => [rec], true);
  assert.ok(isFerryError(r.error, 'FERRY_E_INTEGRITY'), `got ${String(r.error)}`);
  assert.match((r.error as Error).message, /cut before the authenticated end/);
});

test('cut with nothing in flight after the last frame is still not a normal end', async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b);
  const [c, s] = await Promise.all([p.client, p.server]);
  await c.send(0x10, Buffer.from('x'));
  await new Promise((r) => setImmediate(r));
  a.end();
  const got: string[] = [];
  await assert.rejects(
    (async () => {
      for await (const f of s.frames()) got.push(f.payload.toString());
    })(),
    (e: unknown) => isFerryError(e, 'FERRY_E_INTEGRITY'),
  );
  assert.deepEqual(got, ['x']);
  a.destroy();
});
