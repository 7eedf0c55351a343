/**
 * Hostile peers in memory, for the attacks on transfer/'s cores: the real
 * ReceiverSession (or runSender) on one end of memoryChannelPair, and on the other a
 * frame channel the test drives by hand, with no sockets, handshake or records in the
 * way. hostile-peer.ts does the same over loopback TCP with the real handshake, against
 * modes/recv.ts and modes/send.ts.
 *
 *   const h = await memoryHostileSender(dst);      // real receiver, SESSION_OK read
 *   await h.ch.send(MsgType.MANIFEST, encodeManifest([...], false));
 *   await expectCode(h.outcome, 'FERRY_E_PATH');
 *
 *   const r = await memoryHostileReceiver(src);     // real sender, SESSION answered
 *   const m = await r.frames.next();                // its first MANIFEST
 */
import assert from 'node:assert/strict';
import { isFerryError } from '../../src/core/errors.js';
import { SafeWriter } from '../../src/fs/safe-writer.js';
import { resolveSource, walk } from '../../src/fs/walk.js';
import type { Frame, FrameChannel } from '../../src/secure/channel-api.js';
import { ReceiverSession, readOpening, type ReceiverOptions, type ReceiverResult } from '../../src/transfer/receiver.js';
import { runSender, type SenderOptions, type SenderResult } from '../../src/transfer/sender.js';
import { MsgType, TRANSFER_VERSION, encodeSession, encodeSessionOk } from '../../src/wire/messages.js';
import { memoryChannelPair } from './plain-channel.js';

export interface MemoryPeer<T> {
  /** The hostile end. */
  ch: FrameChannel;
  /** What the real end sends, after the opening exchange. */
  frames: AsyncIterator<Frame>;
  /** The real end's result (its rejection is handled: await it to see it). */
  outcome: Promise<T>;
}

/**
 * A real receiver writing into `dst` and a hostile sender: SESSION (one stream, 64 KiB
 * chunks) sent and SESSION_OK read. The receiver closes its sink when done, as
 * modes/recv.ts does.
 */
export async function memoryHostileSender(dst: string, opts: ReceiverOptions = {}): Promise<MemoryPeer<ReceiverResult>> {
  const [s, r] = memoryChannelPair();
  const outcome = (async () => {
    const o = await readOpening(r);
    if (o.kind !== 'session') throw new Error('expected session');
    const sink = await SafeWriter.open(dst);
    try {
      return await new ReceiverSession(r, o.frames, o.session, sink, opts).run();
    } finally {
      sink.close();
    }
  })();
  outcome.catch(() => undefined);
  await s.send(MsgType.SESSION, encodeSession({ version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [] }));
  const frames = s.frames()[Symbol.asyncIterator]();
  const first = await frames.next();
  assert.equal(first.value?.type, MsgType.SESSION_OK);
  return { ch: s, frames, outcome };
}

/** runSender's options for a plain one-stream transfer with 64 KiB chunks. */
export const PLAIN_SENDER: Readonly<SenderOptions> = {
  streams: 1,
  chunkSize: 65536,
  checksum: false,
  delete: false,
  dryRun: false,
  excludes: [],
  preserveSpecial: false,
};

/** A real sender of the tree at `src` and a hostile receiver: SESSION read, SESSION_OK sent. */
export async function memoryHostileReceiver(src: string, opts: Partial<SenderOptions> = {}): Promise<MemoryPeer<SenderResult>> {
  const [s, r] = memoryChannelPair();
  const outcome = runSender(s, walk(await resolveSource(`${src}/`)), { ...PLAIN_SENDER, ...opts });
  outcome.catch(() => undefined);
  const frames = r.frames()[Symbol.asyncIterator]();
  await frames.next(); // SESSION
  await r.send(MsgType.SESSION_OK, encodeSessionOk(new Uint8Array(16)));
  return { ch: r, frames, outcome };
}

/** `p` rejects with a FerryError of this code. */
export async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isFerryError(e), String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
}
