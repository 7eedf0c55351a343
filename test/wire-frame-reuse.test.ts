/**
 * FrameDecoder's reuse of assembled payload buffers (wire/frame.ts): a large frame
 * comes with `release()`, a released buffer carries the next large frame, a frame not
 * released never has its bytes overwritten, and a second release is harmless.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FrameDecoder, encodeFrame } from '../src/wire/frame.js';

/** Feed a frame in 16 KiB pieces (as record contents arrive) and return it. */
function feed(d: FrameDecoder, type: number, payload: Buffer): ReturnType<FrameDecoder['next']> {
  const bytes = Buffer.concat(encodeFrame(type, payload));
  let got: ReturnType<FrameDecoder['next']> = null;
  for (let off = 0; off < bytes.length; off += 16384) {
    d.push(Buffer.from(bytes.subarray(off, off + 16384)));
    for (let f = d.next(); f !== null; f = d.next()) got = f;
  }
  return got;
}

test('an assembled frame released is reused; one not released keeps its bytes', () => {
  const d = new FrameDecoder();
  const a = randomBytes(200_000);
  const f1 = feed(d, 0x15, a)!;
  assert.ok(f1.payload.equals(a));
  assert.equal(typeof f1.release, 'function');
  const f2 = feed(d, 0x15, randomBytes(150_000))!;
  assert.notEqual(f2.payload.buffer, f1.payload.buffer, 'an unreleased buffer is not reused');
  assert.ok(f1.payload.equals(a), 'an unreleased payload keeps its bytes');
  f1.release!();
  f1.release!(); // twice: still one buffer in the pool
  const b = randomBytes(180_000);
  const f3 = feed(d, 0x15, b)!;
  assert.equal(f3.payload.buffer, f1.payload.buffer, 'the released buffer carries the next frame');
  assert.ok(f3.payload.equals(b));
  const f4 = feed(d, 0x15, randomBytes(180_000))!;
  assert.notEqual(f4.payload.buffer, f3.payload.buffer, 'released once, reused once');
  // Small frames are not assembled and carry no release.
  assert.equal(feed(d, 0x13, randomBytes(100))!.release, undefined);
});
