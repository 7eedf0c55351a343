/**
 * wire/messages.ts: every message round-trips, and the decoder refuses truncated,
 * oversized or trailing input with FERRY_E_PROTOCOL before allocating (a seeded
 * mutation run: the seed is in the failure message).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../src/core/errors.js';
import * as M from '../src/wire/messages.js';

const entries: M.WireEntry[] = [
  { index: 7, kind: 'dir', path: 'a', size: 0, mode: 0o755, mtimeNs: 1_700_000_000_123_456_789n },
  { index: 8, kind: 'file', path: 'a/ünïcode.txt', size: 2 ** 40, mode: 0o644, mtimeNs: -5n, hash: new Uint8Array(M.HASH_BYTES).fill(9) },
  { index: 9, kind: 'symlink', path: 'a/l', size: 0, mode: 0o777, mtimeNs: 0n, target: '../x' },
  { index: 10, kind: 'hardlink', path: 'a/h', size: 0, mode: 0o644, mtimeNs: 0n, target: 'a/ünïcode.txt' },
];

test('round trips', () => {
  const s = { version: 1, flags: 5, streams: 4, chunkSize: 1 << 20, excludes: ['*.tmp', '/build/'] };
  assert.deepEqual(M.decodeSession(M.encodeSession(s)), s);
  assert.deepEqual(M.decodeManifest(M.encodeManifest(entries, true), true), entries);
  const ds: M.Decision[] = [
    { index: 1, action: M.Action.SKIP, offset: 0 },
    { index: 2, action: M.Action.RESUME, offset: 12345, prefixHash: new Uint8Array(M.HASH_BYTES).fill(1) },
  ];
  assert.deepEqual(M.decodeDecisions(M.encodeDecisions(ds)), ds);
  assert.deepEqual(M.decodeCommitted(M.encodeCommitted([0, 1, 2 ** 20])), [0, 1, 2 ** 20]);
  assert.deepEqual(M.decodeFailed(M.encodeFailed([{ index: 3, code: 'FERRY_E_NOSPC', message: 'full' }])), [{ index: 3, code: 'FERRY_E_NOSPC', message: 'full' }]);
  const w = new M.ByteWriter();
  M.writeBegin(w, 3, 0, 0, 10);
  M.writeChunkHeader(w, 2, 3);
  w.bytes(Buffer.from('abc'));
  M.writeEnd(w, new Uint8Array(M.HASH_BYTES));
  M.writeAbort(w, 3, 'FERRY_E_CHANGED', 'changed');
  const recs = M.decodeData(w.take());
  assert.deepEqual(recs.map((r) => r.rec), [1, 2, 3, 4]);
  assert.equal(Buffer.from((recs[1] as { data: Uint8Array }).data).toString(), 'abc');
});

test('refuses oversized counts and lengths before allocating', () => {
  const huge = new M.ByteWriter().varint(0).varint(2 ** 40).take(); // a manifest claiming 2^40 entries
  assert.throws(() => M.decodeManifest(huge, false), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
  const longPath = new M.ByteWriter().varint(0).varint(1).u8(0).varint(1 << 30).take();
  assert.throws(() => M.decodeManifest(longPath, false), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
  const chunk = new M.ByteWriter().u8(2).varint(0).varint(2 ** 33).take();
  assert.throws(() => M.decodeData(chunk), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
  const trailing = Buffer.concat([M.encodeCommitted([1]), Buffer.from([0])]);
  assert.throws(() => M.decodeCommitted(trailing), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
  const dirWithSize = M.encodeManifest([{ ...entries[1]!, kind: 'file', hash: undefined as never }], false);
  dirWithSize[2] = 1; // the kind byte: a "dir" that carries a size
  assert.throws(() => M.decodeManifest(dirWithSize, false), (e: unknown) => isFerryError(e, 'FERRY_E_PROTOCOL'));
});

test('seeded mutation run: decoders only ever throw FERRY_E_PROTOCOL', () => {
  const seed = 20261121;
  let x = seed;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const samples: [Uint8Array, (b: Uint8Array) => unknown][] = [
    [M.encodeManifest(entries, true), (b) => M.decodeManifest(b, true)],
    [M.encodeSession({ version: 1, flags: 0, streams: 2, chunkSize: 65536, excludes: ['x'] }), M.decodeSession],
    [M.encodeDecisions([{ index: 1, action: M.Action.RESUME, offset: 9, prefixHash: new Uint8Array(M.HASH_BYTES) }]), M.decodeDecisions],
    [M.encodeFailed([{ index: 1, code: 'C', message: 'm' }]), M.decodeFailed],
  ];
  for (let i = 0; i < 5000; i++) {
    const [orig, decode] = samples[rnd(samples.length)]!;
    const b = Buffer.from(orig);
    const mutated = rnd(2) === 0 ? b.subarray(0, rnd(b.length)) : b;
    for (let k = 0; k < 1 + rnd(3); k++) if (mutated.length > 0) mutated[rnd(mutated.length)] = rnd(256);
    try {
      decode(mutated);
    } catch (e) {
      assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), `seed ${seed}, iteration ${i}: ${String(e)}`);
    }
  }
});

test('the wire carries content digests at the size fs/checksum makes them', async () => {
  const { CONTENT_HASH_BYTES, contentHashOf, newContentHash } = await import('../src/fs/checksum.js');
  assert.equal(M.HASH_BYTES, CONTENT_HASH_BYTES);
  const data = Buffer.from('the same bytes, streamed or at once');
  const streamed = newContentHash().update(data.subarray(0, 7)).update(data.subarray(7)).digest();
  assert.equal(streamed.length, CONTENT_HASH_BYTES);
  assert.deepEqual(streamed, contentHashOf(data));
  assert.notDeepEqual(contentHashOf(Buffer.from('a')), contentHashOf(Buffer.from('b')));
});
