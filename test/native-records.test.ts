/**
 * The data plane's batched records (native/records.c) against the TypeScript fallback
 * (jsRecords in secure/record-layer.ts) and the one-record reference (sealRecord /
 * openRecord): byte-identical records on random sizes and splits, RFC 8448 §3's records
 * (the vectors of secure-record-layer.test.ts) through both, the same verdict and the
 * same bytes left behind for every kind of bad record, key updates inside one batch,
 * and FERRY_NATIVE=0 loading no native code at all.
 *
 * Native cases are skipped with a reason where the addon is not built (no C compiler;
 * with CI=true that is a failure), and under FERRY_NATIVE=0 (the suite's second pass),
 * where the fallback is what runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { isFerryError } from '../src/core/errors.js';
import { nativeStatus } from '../src/native/index.js';
import {
  jsRecords,
  nativeRecords,
  OpenStatus,
  RecordOpener,
  RecordSealer,
  sealRecord,
  sealedLength,
  MAX_RECORD_PLAINTEXT,
  type RecordBatcher,
} from '../src/secure/record-layer.js';
import type { TrafficSecret } from '../src/secure/traffic-secret.js';
import { isCI } from './support/tools.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const native = nativeRecords();
const noNative = native ? false : `native records unavailable: ${nativeStatus().recordsReason}`;
const batchers: RecordBatcher[] = native ? [jsRecords, native] : [jsRecords];

// RFC 8448 §3: {client} application_data record (payload 00 01 .. 31, seq 0 under client app keys).
const C_AP_KEY = hex('17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51');
const C_AP_IV = hex('5b 78 92 3d ee 08 57 90 33 e5 23 d9');
const C_APP_RECORD = hex(`17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55
  cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
  62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4`);
// RFC 8448 §3: {server} application_data record (same payload; seq 1).
const S_AP_KEY = hex('9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56');
const S_AP_IV = hex('cf 78 2b 88 dd 83 54 9a ad f1 e9 84');
const S_APP_RECORD = hex(`17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4
  a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
  fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d`);
const PAYLOAD = Buffer.from(Array.from({ length: 50 }, (_, i) => i));

/** A small deterministic PRNG, so a failure names a reproducible case. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A record with an arbitrary TLSInnerPlaintext (for bad types, padding, oversize). */
function rawRecord(ts: TrafficSecret, inner: Buffer): Buffer {
  const nonce = Buffer.from(ts.iv);
  const sb = Buffer.alloc(8);
  sb.writeBigUInt64BE(ts.seq);
  for (let i = 0; i < 8; i++) nonce[4 + i] = nonce[4 + i]! ^ sb[i]!;
  const header = Buffer.from([0x17, 0x03, 0x03, 0, 0]);
  header.writeUInt16BE(inner.length + 16, 3);
  const c = createCipheriv('aes-128-gcm', ts.key, nonce);
  c.setAAD(header);
  const ct = Buffer.concat([c.update(inner), c.final()]);
  return Buffer.concat([header, ct, c.getAuthTag()]);
}

function openAll(b: RecordBatcher, ts: TrafficSecret, wire: Buffer): { n: number; res: number[]; after: Buffer } {
  const buf = Buffer.from(wire);
  const res = new Int32Array(4 + 2 * 64);
  const n = b.openRecords(b.aeadNew(ts.key, ts.iv, true), Number(ts.seq), buf, 0, buf.length, 64, res);
  return { n, res: [...res.subarray(0, 4 + 2 * n)], after: buf };
}

test('RFC 8448 §3 records, sealed and opened by each batcher', () => {
  for (const b of batchers) {
    for (const [key, iv, seq, record] of [
      [C_AP_KEY, C_AP_IV, 0, C_APP_RECORD],
      [S_AP_KEY, S_AP_IV, 1, S_APP_RECORD],
    ] as const) {
      const out = Buffer.alloc(record.length + 3, 0xee);
      const ctx = b.aeadNew(key, iv, false);
      assert.equal(b.sealRecords(ctx, seq, [PAYLOAD.subarray(0, 11), PAYLOAD.subarray(11)], out, 3), record.length, b.name);
      assert.deepEqual(out.subarray(3), record, `${b.name} seal`);
      assert.deepEqual(out.subarray(0, 3), Buffer.alloc(3, 0xee), `${b.name} wrote before its offset`);
      const { n, res, after } = openAll(b, { key, iv, seq: BigInt(seq) }, record);
      assert.equal(n, 1);
      assert.deepEqual(res, [record.length, OpenStatus.OK, 0, 0, 5, 50]);
      assert.deepEqual(after.subarray(5, 55), PAYLOAD, `${b.name} open in place`);
    }
  }
});

test('native and js seal byte-identical records on random sizes and splits, and match sealRecord', { skip: noNative }, () => {
  const rnd = prng(1201);
  for (let iter = 0; iter < 60; iter++) {
    const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: BigInt(Math.floor(rnd() * 2 ** 32)) * 1000n };
    const size = iter < 5 ? [0, 1, 16383, 16384, 16385][iter]! : Math.floor(rnd() * 200_000);
    const data = randomBytes(size);
    const parts: Buffer[] = [];
    for (let off = 0; off < size; ) {
      const n = rnd() < 0.2 ? 0 : 1 + Math.floor(rnd() * 40_000);
      parts.push(data.subarray(off, off + n));
      off += n;
    }
    const outs = batchers.map((b) => {
      const out = Buffer.alloc(sealedLength(size));
      assert.equal(b.sealRecords(b.aeadNew(ts.key, ts.iv, false), Number(ts.seq), parts, out, 0), out.length);
      return out;
    });
    assert.ok(outs[0]!.equals(outs[1]!), `iteration ${iter}: native and js differ (size ${size})`);
    // Against the one-record reference.
    let off = 0;
    for (let r = 0, seq = ts.seq; r * MAX_RECORD_PLAINTEXT < size; r++, seq++) {
      const ref = sealRecord({ ...ts, seq }, data.subarray(r * MAX_RECORD_PLAINTEXT, (r + 1) * MAX_RECORD_PLAINTEXT));
      assert.ok(outs[1]!.subarray(off, off + ref.length).equals(ref), `iteration ${iter}: record ${r} differs from sealRecord`);
      off += ref.length;
    }
    // Both open it back, in place, with the same spans.
    const opened = batchers.map((b) => openAll(b, ts, outs[0]!));
    assert.deepEqual(opened[0]!.res, opened[1]!.res);
    const content = opened[1]!.res.slice(4);
    const got: Buffer[] = [];
    for (let i = 0; i < content.length; i += 2) got.push(opened[1]!.after.subarray(content[i]!, content[i]! + content[i + 1]!));
    assert.ok(Buffer.concat(got).equals(data), `iteration ${iter}: content differs`);
  }
});

test('bad records: the same verdict from each batcher, and a forged record is left as it arrived', () => {
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 7n };
  const good = sealRecord(ts, Buffer.from('first'));
  const next = { ...ts, seq: 8n };
  const tampered = sealRecord(next, Buffer.from('second'));
  tampered[10] = tampered[10]! ^ 1;
  const padded = Buffer.concat([good, rawRecord(next, Buffer.from([9, 9, 0x17, 0, 0, 0]))]);
  const cases: [string, Buffer, number[]][] = [
    ['auth', Buffer.concat([good, tampered]), [good.length, OpenStatus.AUTH_FAILED, 0]],
    ['header', Buffer.concat([good, Buffer.from([0x16, 3, 3, 0, 20])]), [good.length, OpenStatus.MALFORMED_HEADER, 0]],
    ['version', Buffer.concat([good, Buffer.from([0x17, 3, 1, 0, 20])]), [good.length, OpenStatus.MALFORMED_HEADER, 0]],
    ['short', Buffer.concat([good, Buffer.from([0x17, 3, 3, 0, 16])]), [good.length, OpenStatus.BAD_LENGTH, 16]],
    ['long', Buffer.concat([good, Buffer.from([0x17, 3, 3, 0x41, 0x01])]), [good.length, OpenStatus.BAD_LENGTH, 0x4101]],
    ['type', Buffer.concat([good, rawRecord(next, Buffer.from([1, 2, 22, 0, 0]))]), [good.length, OpenStatus.BAD_TYPE, 22]],
    ['no type', Buffer.concat([good, rawRecord(next, Buffer.alloc(30))]), [good.length, OpenStatus.NO_TYPE, 0]],
    ['too long', Buffer.concat([good, rawRecord(next, Buffer.concat([Buffer.alloc(16385, 1), Buffer.from([0x17])]))]), [good.length, OpenStatus.TOO_LONG, 0]],
    ['padded', padded, [padded.length, OpenStatus.OK, 0]],
    ['incomplete', Buffer.concat([good, tampered.subarray(0, 20)]), [good.length, OpenStatus.OK, 0]],
  ];
  for (const [name, wire, want] of cases) {
    const results = batchers.map((b) => openAll(b, ts, wire));
    for (const [i, r] of results.entries()) {
      assert.deepEqual(r.res.slice(0, 3), want, `${name} (${batchers[i]!.name})`);
      assert.deepEqual(r.after.subarray(5, 10).toString(), 'first', `${name} (${batchers[i]!.name})`);
      if (name === 'auth' || name === 'incomplete') {
        assert.ok(r.after.subarray(good.length).equals(wire.subarray(good.length)), `${name} (${batchers[i]!.name}): the bad record was changed`);
      }
    }
    if (results.length === 2) assert.deepEqual(results[0]!.res, results[1]!.res, name);
  }
  for (const b of batchers) assert.deepEqual(openAll(b, next, padded.subarray(good.length)).res, [padded.length - good.length, 0, 0, 0, 5, 2]);
});

test('RecordOpener: a key update between two records of one chunk is honoured; records opened ahead under the old key fail', () => {
  for (const batcher of batchers) {
    const k1: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 0n };
    const k2: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 0n };
    const wire = Buffer.concat([sealRecord(k1, Buffer.from('a')), sealRecord({ ...k1, seq: 1n }, Buffer.from('b')), sealRecord(k2, Buffer.from('c'))]);
    const o = new RecordOpener(k1, { batcher });
    o.push(Buffer.from(wire));
    assert.equal(o.next()?.toString(), 'a');
    assert.equal(o.next()?.toString(), 'b');
    o.setKeys(k2);
    assert.equal(o.next()?.toString(), 'c', batcher.name);
    assert.equal(o.next(), null);
    assert.equal(o.buffered, 0);
    // The key update after 'a' while 'b' (old key) was already opened: 'b' must not pass.
    const o2 = new RecordOpener(k1, { batcher, peer: 'p' });
    o2.push(Buffer.from(wire));
    assert.equal(o2.next()?.toString(), 'a');
    o2.setKeys(k2);
    assert.ok(o2.buffered > 0);
    assert.throws(() => o2.next(), (e) => isFerryError(e, 'FERRY_E_INTEGRITY') && /failed authentication/.test(e.message));
  }
});

test('RecordOpener gives the same contents byte-by-byte and in big chunks, with either batcher', () => {
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 5n };
  const data = randomBytes(100_000);
  const wire = new RecordSealer(ts, { batcher: jsRecords }).seal([data]);
  for (const batcher of batchers) {
    for (const step of [1, 4, 5, 6, 1000, 16405, 16406, 65536, wire.length]) {
      const o = new RecordOpener(ts, { batcher });
      const got: Buffer[] = [];
      const copy = Buffer.from(wire);
      for (let i = 0; i < copy.length; i += step) {
        o.push(copy.subarray(i, i + step));
        for (let c = o.next(); c !== null; c = o.next()) got.push(Buffer.from(c));
      }
      assert.ok(Buffer.concat(got).equals(data), `${batcher.name}, chunks of ${step}`);
      assert.equal(o.buffered, 0);
      assert.equal(o.seq, 5n + 7n);
    }
  }
});

test('FERRY_NATIVE=0: the loader reports every path as js and no native code is mapped', { timeout: 20_000 }, () => {
  const script = `
    const n = await import('${root}dist/src/native/index.js');
    const r = await import('${root}dist/src/secure/record-layer.js');
    const k = await import('${root}dist/src/secure/ktls.js');
    const ts = { key: Buffer.alloc(16, 1), iv: Buffer.alloc(12, 2), seq: 0n };
    const s = new r.RecordSealer(ts);
    const o = new r.RecordOpener(ts);
    o.push(s.seal([Buffer.from('x')]));
    const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
    console.log(JSON.stringify({ status: n.nativeStatus(), sealer: s.implementation, opener: o.implementation,
      content: o.next().toString(), ktls: k.ktlsSupport(), mapped: /ferry_native/.test(maps) }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, FERRY_NATIVE: '0' },
    encoding: 'utf8',
    timeout: 15_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown> & { status: Record<string, unknown>; ktls: { available: boolean; reason: string } };
  assert.equal(out.status.records, 'js');
  assert.equal(out.status.ktls, 'js');
  assert.equal(out.status.addon, undefined);
  assert.equal(out.sealer, 'js');
  assert.equal(out.opener, 'js');
  assert.equal(out.content, 'x');
  assert.equal(out.ktls.available, false);
  assert.match(out.ktls.reason, /FERRY_NATIVE=0/);
  assert.equal(out.mapped, false, 'ferry_native.node is mapped into a FERRY_NATIVE=0 process');
});

test('CI builds the addon: the native pass must run native records', () => {
  if (!isCI() || process.env.FERRY_NATIVE === '0') return;
  assert.equal(nativeStatus().records, 'native', `CI=true but records are not native: ${nativeStatus().recordsReason}`);
});

test('with the addon built, records use it unless FERRY_NATIVE=0', { skip: noNative }, () => {
  assert.equal(new RecordSealer({ key: Buffer.alloc(16), iv: Buffer.alloc(12), seq: 0n }).implementation, 'native');
  assert.equal(nativeStatus().records, 'native');
  // A misuse is a TypeError, not a crash: an open context cannot seal, a sealed one cannot open.
  const n = native!;
  const openCtx = n.aeadNew(Buffer.alloc(16), Buffer.alloc(12), true);
  assert.throws(() => n.sealRecords(openCtx, 0, [Buffer.alloc(1)], Buffer.alloc(100), 0), TypeError);
  assert.throws(() => n.openRecords(n.aeadNew(Buffer.alloc(16), Buffer.alloc(12), false), 0, Buffer.alloc(10), 0, 10, 1, new Int32Array(6)), TypeError);
  assert.throws(() => n.sealRecords({} as never, 0, [], Buffer.alloc(1), 0), TypeError);
  assert.throws(() => n.sealRecords(n.aeadNew(Buffer.alloc(16), Buffer.alloc(12), false), 0, [Buffer.alloc(10)], Buffer.alloc(31), 0), RangeError);
  assert.throws(() => n.openRecords(openCtx, 0, Buffer.alloc(10), 0, 11, 1, new Int32Array(6)), TypeError);
  assert.throws(() => n.aeadNew(Buffer.alloc(15), Buffer.alloc(12), true), TypeError);
});

test('openRecords into an output buffer: contents laid end to end, the same from each batcher, the input untouched', () => {
  const rnd = prng(1207);
  for (let iter = 0; iter < 30; iter++) {
    const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: BigInt(iter * 1000) };
    const size = iter < 3 ? [1, 16384, 16385][iter]! : Math.floor(rnd() * 150_000) + 1;
    const data = randomBytes(size);
    const wire = new RecordSealer(ts, { batcher: jsRecords }).seal([data]);
    const outOff = Math.floor(rnd() * 100);
    const outLen = outOff + Math.floor(rnd() * (size + 40_000));
    const stop = outOff + Math.floor(rnd() * (outLen - outOff + 1));
    const results = batchers.map((b) => {
      const buf = Buffer.from(wire);
      const out = Buffer.alloc(outLen, 0xee);
      const res = new Int32Array(4 + 2 * 64);
      const n = b.openRecords(b.aeadNew(ts.key, ts.iv, true), Number(ts.seq), buf, 0, buf.length, 64, res, out, outOff, stop);
      assert.ok(buf.equals(wire), `${b.name}: the input was written`);
      let q = outOff;
      for (let i = 0; i < n; i++) {
        assert.equal(res[4 + 2 * i], q, `${b.name}: contents are not laid end to end`);
        q += res[5 + 2 * i]!;
      }
      assert.ok(out.subarray(outOff, q).equals(data.subarray(0, q - outOff)), `${b.name} iteration ${iter}: content differs`);
      assert.ok(out.subarray(0, outOff).equals(Buffer.alloc(outOff, 0xee)), `${b.name}: wrote before outOff`);
      // It stopped at the output's stop, at a record without room, or at the end of the input.
      if (res[0]! < wire.length) assert.ok(q >= stop || res[3] === 1, `${b.name} iteration ${iter}: stopped early`);
      return [n, ...res.subarray(0, 4 + 2 * n)];
    });
    if (results.length === 2) assert.deepEqual(results[0], results[1], `iteration ${iter}`);
  }
  // A forged record: the same verdict, and the input is as it arrived.
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 3n };
  const wire = Buffer.concat([sealRecord(ts, Buffer.from('first')), sealRecord({ ...ts, seq: 4n }, Buffer.from('second'))]);
  wire[wire.length - 3] = wire[wire.length - 3]! ^ 1;
  for (const b of batchers) {
    const buf = Buffer.from(wire);
    const res = new Int32Array(4 + 2 * 8);
    const out = Buffer.alloc(100);
    assert.equal(b.openRecords(b.aeadNew(ts.key, ts.iv, true), 3, buf, 0, buf.length, 8, res, out, 0, 100), 1, b.name);
    assert.deepEqual([...res.subarray(0, 6)], [22 + 5, OpenStatus.AUTH_FAILED, 0, 0, 0, 5], b.name);
    assert.equal(out.subarray(0, 5).toString(), 'first');
    assert.ok(buf.equals(wire), `${b.name}: the input was written`);
  }
});

test('RecordOpener.nextInto (a frame being assembled) and next() together give the stream back, in any chunking; a forged record still fails', () => {
  const ts: TrafficSecret = { key: randomBytes(16), iv: randomBytes(12), seq: 9n };
  const data = randomBytes(200_000);
  const wire = new RecordSealer(ts, { batcher: jsRecords }).seal([data.subarray(0, 70_000), data.subarray(70_000)]);
  for (const batcher of batchers) {
    for (const step of [1, 7, 16406, 16407, 65536, 262144, wire.length]) {
      const o = new RecordOpener(ts, { batcher, borrowed: true });
      // A destination of 50,000 bytes at a time (frames), with room past its stop.
      const got: Buffer[] = [];
      let dst = Buffer.alloc(50_000 + 20_000);
      let filled = 0;
      const take = (b: Buffer): void => {
        got.push(Buffer.from(b));
      };
      for (let i = 0; i < wire.length; i += step) {
        o.push(Buffer.from(wire.subarray(i, i + step)));
        for (;;) {
          const n = filled < 50_000 ? o.nextInto(dst, filled, 50_000) : 0;
          if (n > 0) {
            filled += n;
            if (filled >= 50_000) {
              take(dst.subarray(0, filled));
              dst = Buffer.alloc(70_000);
              filled = 0;
            }
            continue;
          }
          const c = o.next(1);
          if (c === null) break;
          take(dst.subarray(0, filled));
          filled = 0;
          take(c);
        }
      }
      take(dst.subarray(0, filled));
      assert.ok(Buffer.concat(got).equals(data), `${batcher.name}, chunks of ${step}`);
      assert.equal(o.buffered, 0);
      assert.equal(o.seq, 9n + 13n);
    }
    // A bit flipped in the third record: the contents before it, then FERRY_E_INTEGRITY.
    const bad = Buffer.from(wire);
    bad[2 * (16384 + 22) + 100] = bad[2 * (16384 + 22) + 100]! ^ 1;
    const o = new RecordOpener(ts, { batcher, peer: 'p' });
    o.push(bad);
    const dst = Buffer.alloc(100_000);
    assert.equal(o.nextInto(dst, 0, 100_000), 2 * 16384, batcher.name);
    assert.equal(o.nextInto(dst, 2 * 16384, 100_000), 0);
    assert.throws(() => o.next(), (e) => isFerryError(e, 'FERRY_E_INTEGRITY') && /failed authentication/.test(e.message), batcher.name);
  }
});
