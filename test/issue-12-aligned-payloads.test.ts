/**
 * Issue #12, receive side of direct I/O: the receiver writes a big file's chunks with
 * O_DIRECT (fs/direct-io.ts), straight from the frame's memory when that memory is
 * aligned, else through a staging copy. The channel places every large DATA payload
 * (wire/frame.ts `place`, secure/channel.ts) so that its first CHUNK's bytes start at a
 * multiple of 4096 in memory. What must hold: `dataLead` finds where those bytes begin
 * (or says it cannot), a placed payload is byte-for-byte the frame that was sent
 * (including bytes written straight into it and past its end), and through a real
 * channel the chunk arrives aligned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { FrameDecoder, PLACE_SLACK, encodeFrame } from '../src/wire/frame.js';
import { ByteWriter, MsgType, dataLead, decodeData, writeBegin, writeChunkHeader, writeEnd } from '../src/wire/messages.js';
import { netBatchAddon } from '../src/native/index.js';
import { channelPair, tcpPair } from './support/secure-helpers.js';

/** A DATA payload: optionally a BEGIN, then one CHUNK of `data` at `offset`, optionally an END. */
function dataPayload(data: Buffer, offset: number, begin: boolean, end: boolean): Buffer {
  const w = new ByteWriter();
  if (begin) writeBegin(w, 70_000, 0, offset, offset + data.length);
  writeChunkHeader(w, offset, data.length);
  const head = Buffer.from(w.view());
  const tail = new ByteWriter();
  if (end) writeEnd(tail, Buffer.alloc(16, 7));
  return Buffer.concat([head, data, Buffer.from(tail.view())]);
}

test('dataLead: where the first CHUNK of a DATA payload begins, past a BEGIN; null when the head does not reach it', () => {
  for (const begin of [false, true]) {
    for (const offset of [0, 127, 1 << 20, 2 ** 40 + 3]) {
      const payload = dataPayload(randomBytes(1000), offset, begin, true);
      const chunk = decodeData(payload).find((r) => r.rec === 2);
      assert.ok(chunk !== undefined && chunk.rec === 2);
      const at = chunk.data.byteOffset - payload.byteOffset;
      assert.equal(dataLead(payload.subarray(0, 64)), at, `begin=${begin} offset=${offset}`);
      assert.equal(dataLead(payload.subarray(0, at)), at, 'the head may end right where the data starts');
      assert.equal(dataLead(payload.subarray(0, at - 1)), null, 'a head cut inside the CHUNK header');
    }
  }
  const end = new ByteWriter();
  writeEnd(end, Buffer.alloc(16));
  assert.equal(dataLead(Buffer.from(end.view())), null, 'a payload that starts with END');
  assert.equal(dataLead(new Uint8Array(0)), null);
  assert.equal(dataLead(Uint8Array.from([2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1])), null, 'a varint longer than 8 bytes');
});

test('a placed payload is the frame sent: pushed in pieces or written straight into its room, past its end too', () => {
  const offsets: number[] = [];
  for (const at of [0, 1, 777, PLACE_SLACK - 1, PLACE_SLACK, -5, 2.5]) {
    const d = new FrameDecoder({
      borrowed: true,
      place: (type, head, buf) => {
        assert.ok(type === 0x15 || type === 0x16, `type ${type}`);
        assert.ok(head.length > 0 && head.length <= 64);
        assert.ok(buf.length >= 100_000 + PLACE_SLACK);
        return at;
      },
    });
    const a = randomBytes(100_000);
    const b = randomBytes(70_000);
    const stream = Buffer.concat([...encodeFrame(0x15, a), ...encodeFrame(0x16, b)]);
    const got: Buffer[] = [];
    const drain = (): void => {
      for (let f = d.next(); f !== null; f = d.next()) {
        if (f.type === 0x15) offsets.push(f.payload.byteOffset);
        got.push(Buffer.from(f.payload));
      }
    };
    d.push(Buffer.from(stream.subarray(0, 1000)));
    drain();
    for (let off = 1000; off < stream.length; ) {
      const room = d.room();
      const n = Math.min(room === null ? 777 : 20_000, stream.length - off);
      if (room === null) d.push(Buffer.from(stream.subarray(off, off + n)));
      else {
        const k = Math.min(n, room.buf.length - room.off);
        stream.copy(room.buf, room.off, off, off + k);
        d.wrote(k);
        off += k;
        drain();
        continue;
      }
      off += n;
      drain();
    }
    assert.equal(got.length, 2, `place ${at}: two frames`);
    assert.ok(got[0]!.equals(a) && got[1]!.equals(b), `place ${at}: both intact`);
  }
  // Offsets outside [0, PLACE_SLACK) or not whole are ignored (the payload starts at 0 of its buffer).
  assert.deepEqual(offsets.slice(0, 4), [0, 1, 777, PLACE_SLACK - 1]);
});

test('through a channel over TCP, a big DATA chunk arrives at an address aligned for direct I/O', async (t) => {
  const gap = netBatchAddon()?.alignGap;
  if (gap === undefined) {
    t.skip('no native addon (FERRY_NATIVE=0): no direct I/O, so nothing is placed');
    return;
  }
  const { client: a, server: b, close } = await tcpPair();
  try {
    const p = channelPair(a, b);
    const [c, s] = await Promise.all([p.client, p.server]);
    // The frames as they leave the channel (collect() would copy them).
    const got = (async () => {
      const out: { type: number; payload: Uint8Array }[] = [];
      for await (const f of s.frames()) out.push({ type: f.type, payload: f.payload });
      return out;
    })();
    const sent: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      const payload = dataPayload(randomBytes(1 << 20), i * (1 << 20) + (i === 5 ? 3 : 0), i % 2 === 0, i === 5);
      sent.push(payload);
      await c.send(MsgType.DATA, payload);
    }
    await c.close();
    await s.close();
    const frames = await got;
    assert.equal(frames.length, sent.length);
    frames.forEach((f, i) => {
      assert.ok(Buffer.from(f.payload.buffer, f.payload.byteOffset, f.payload.length).equals(sent[i]!), `frame ${i} intact`);
      const chunk = decodeData(f.payload).find((r) => r.rec === 2);
      assert.ok(chunk !== undefined && chunk.rec === 2);
      assert.equal(gap(chunk.data, PLACE_SLACK), 0, `frame ${i}: the chunk's bytes start at a multiple of ${PLACE_SLACK}`);
    });
  } finally {
    close();
  }
});
