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

test('bytes written straight into the frame being assembled (room/wrote): those past its end go to the frames after it', () => {
  for (const borrowed of [false, true]) {
    const d = new FrameDecoder({ borrowed });
    const a = randomBytes(100_000);
    const b = randomBytes(30);
    const c = randomBytes(70_000);
    const stream = Buffer.concat([...encodeFrame(0x15, a), ...encodeFrame(0x16, b), ...encodeFrame(0x17, c)]);
    const got: [number, Buffer][] = [];
    const drain = (): void => {
      for (let f = d.next(); f !== null; f = d.next()) got.push([f.type, Buffer.from(f.payload)]);
    };
    let off = 0;
    // The first 1000 bytes are pushed (the frame starts assembling), then the rest goes
    // into the room the decoder offers, up to 20,000 bytes at a time and past its stop.
    d.push(Buffer.from(stream.subarray(0, 1000)));
    off = 1000;
    drain();
    while (off < stream.length) {
      const room = d.room();
      if (room === null) {
        const n = Math.min(777, stream.length - off);
        d.push(Buffer.from(stream.subarray(off, off + n)));
        off += n;
      } else {
        assert.ok(room.off < room.stop && room.stop <= room.buf.length);
        const n = Math.min(20_000, room.buf.length - room.off, stream.length - off);
        stream.copy(room.buf, room.off, off, off + n);
        d.wrote(n);
        off += n;
      }
      drain();
    }
    assert.deepEqual(
      got.map(([t, p]) => [t, p.length]),
      [
        [0x15, a.length],
        [0x16, b.length],
        [0x17, c.length],
      ],
      `borrowed ${borrowed}`,
    );
    assert.ok(got[0]![1].equals(a) && got[1]![1].equals(b) && got[2]![1].equals(c), `borrowed ${borrowed}`);
    assert.equal(d.buffered, 0);
    assert.equal(d.room(), null);
  }
});
