/**
 * Frame encoder/decoder: round trips over arbitrary chunking, zero-copy when a
 * frame lies in one chunk, caps checked before allocating, seeded fuzzing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isFerryError } from '../src/core/errors.js';
import { BufferList, FrameDecoder, encodeFrame, encodeFrameHeader, FRAME_HEADER_BYTES } from '../src/wire/frame.js';
import { prng } from './support/secure-helpers.js';

test('round trip over every chunking of a small stream', () => {
  const frames = [
    { type: 0x10, payload: Buffer.from('hello') },
    { type: 0x11, payload: Buffer.alloc(0) },
    { type: 0xff, payload: randomBytes(300) },
  ];
  const wire = Buffer.concat(frames.flatMap((f) => encodeFrame(f.type, f.payload)));
  for (let step = 1; step <= wire.length; step++) {
    const d = new FrameDecoder();
    const got: { type: number; payload: Buffer }[] = [];
    for (let i = 0; i < wire.length; i += step) {
      d.push(wire.subarray(i, i + step));
      for (let f = d.next(); f; f = d.next()) got.push({ type: f.type, payload: Buffer.from(f.payload) });
    }
    assert.deepEqual(got, frames, `step ${step}`);
    assert.equal(d.buffered, 0);
  }
});

test('a frame inside one chunk is a view of it (no copy); a spanning frame is copied once', () => {
  // 8 KiB: above Buffer's pool size, so buffers do not share the pool's ArrayBuffer by accident.
  const payload = randomBytes(8192);
  const wire = Buffer.concat(encodeFrame(0x10, payload));
  const d = new FrameDecoder();
  d.push(wire);
  const f = d.next()!;
  assert.equal(f.payload.buffer, wire.buffer);
  assert.equal(f.payload.byteOffset, wire.byteOffset + 5);
  const d2 = new FrameDecoder();
  d2.push(wire.subarray(0, 700));
  assert.equal(d2.next(), null);
  d2.push(wire.subarray(700));
  const f2 = d2.next()!;
  assert.notEqual(f2.payload.buffer, wire.buffer);
  assert.deepEqual(f2.payload, payload);
});

test('a 2 GiB length is refused before anything is allocated', (t) => {
  const allocs: number[] = [];
  const spy = (orig: (n: number) => Buffer) => (n: number): Buffer => {
    allocs.push(n);
    return orig(n);
  };
  t.mock.method(Buffer, 'allocUnsafe', spy(Buffer.allocUnsafe.bind(Buffer)));
  t.mock.method(Buffer, 'alloc', spy(Buffer.alloc.bind(Buffer) as (n: number) => Buffer));
  const d = new FrameDecoder({ peer: 'evil' });
  d.push(Buffer.from([0x10, 0x80, 0x00, 0x00, 0x00]));
  assert.throws(
    () => d.next(),
    (e) => isFerryError(e, 'FERRY_E_PROTOCOL') && /evil: frame of 2147483648 bytes exceeds the 4194304-byte limit/.test(e.message),
  );
  assert.ok(allocs.every((n) => n < 1024), `allocations: ${allocs.join(',')}`);
  // The same with the header split over chunks.
  const d2 = new FrameDecoder({ maxPayload: 10 });
  d2.push(Buffer.from([0x10, 0x00]));
  assert.equal(d2.next(), null);
  d2.push(Buffer.from([0x00, 0x00, 0x0b]));
  assert.throws(() => d2.next(), (e) => isFerryError(e, 'FERRY_E_PROTOCOL'));
});

test('header encoding', () => {
  assert.deepEqual(encodeFrameHeader(0x12, 0x01020304), Buffer.from([0x12, 1, 2, 3, 4]));
  assert.equal(FRAME_HEADER_BYTES, 5);
  assert.throws(() => encodeFrameHeader(256, 0));
  const parts = encodeFrame(0x10, [Buffer.from('ab'), new Uint8Array([0x63])]);
  assert.deepEqual(Buffer.concat(parts), Buffer.from([0x10, 0, 0, 0, 3, 0x61, 0x62, 0x63]));
});

test('BufferList consume across chunks and drain', () => {
  const l = new BufferList();
  l.push(Buffer.from('ab'));
  l.push(Buffer.from('cde'));
  l.push(Buffer.from('f'));
  assert.equal(l.length, 6);
  assert.equal(l.byteAt(4), 0x65);
  assert.equal(l.readUIntBE(1, 3), 0x626364);
  assert.equal(l.consume(3).toString(), 'abc');
  assert.equal(l.consume(1).toString(), 'd');
  assert.deepEqual(Buffer.concat(l.drain()).toString(), 'ef');
  assert.equal(l.length, 0);
});

test('fuzz: random and mutated streams give frames or FERRY_E_PROTOCOL, nothing else', () => {
  const seed = 0x5eed_f00d;
  const rnd = prng(seed);
  const valid = Buffer.concat([
    ...encodeFrame(0x10, Buffer.from('manifest')),
    ...encodeFrame(0x20, randomBytes(100)),
    ...encodeFrame(0x00, Buffer.alloc(0)),
  ]);
  for (let iter = 0; iter < 2000; iter++) {
    let input: Buffer;
    if (iter % 2 === 0) {
      input = Buffer.alloc(Math.floor(rnd() * 64));
      for (let i = 0; i < input.length; i++) input[i] = Math.floor(rnd() * 256);
    } else {
      input = Buffer.from(valid);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) {
        const i = Math.floor(rnd() * input.length);
        input[i] = Math.floor(rnd() * 256);
      }
    }
    const d = new FrameDecoder({ maxPayload: 4096 });
    try {
      let off = 0;
      while (off < input.length) {
        const n = 1 + Math.floor(rnd() * 17);
        d.push(input.subarray(off, off + n));
        off += n;
        for (let f = d.next(); f; f = d.next()) assert.ok(f.payload.length <= 4096);
      }
    } catch (e) {
      assert.ok(isFerryError(e, 'FERRY_E_PROTOCOL'), `seed ${seed} iteration ${iter}: ${String(e)}`);
    }
  }
});

test('large frames are assembled in place across many chunks, with frames before and after', () => {
  const big = randomBytes(200_000);
  const wire = Buffer.concat([
    ...encodeFrame(0x10, Buffer.from('first')),
    ...encodeFrame(0x11, big),
    ...encodeFrame(0x12, Buffer.from('after')),
    ...encodeFrame(0x13, randomBytes(70_000)),
  ]);
  const rnd = prng(99);
  for (let round = 0; round < 20; round++) {
    const d = new FrameDecoder();
    const got: { type: number; payload: Buffer }[] = [];
    for (let off = 0; off < wire.length; ) {
      const n = 1 + Math.floor(rnd() * 40_000);
      d.push(wire.subarray(off, off + n));
      off += n;
      for (let f = d.next(); f; f = d.next()) got.push({ type: f.type, payload: Buffer.from(f.payload) });
    }
    assert.deepEqual(got.map((f) => f.type), [0x10, 0x11, 0x12, 0x13], `round ${round}`);
    assert.ok(got[1]!.payload.equals(big));
    assert.equal(got[2]!.payload.toString(), 'after');
    assert.equal(d.buffered, 0);
  }
});
