/**
 * Runs a whole transfer session in memory (sender and receiver state machines over
 * memoryChannelPair, `-P N` included), for transfer/ tests that need no sockets.
 */
import type { SourceEntry } from '../../src/core/entry.js';
import { compileExcludes } from '../../src/fs/exclude.js';
import { resolveSource, walk } from '../../src/fs/walk.js';
import { SafeWriter } from '../../src/fs/safe-writer.js';
import type { FrameChannel } from '../../src/secure/channel-api.js';
import { ReceiverSession, readOpening, type ReceiverResult } from '../../src/transfer/receiver.js';
import { runSender, type SenderOptions, type SenderResult } from '../../src/transfer/sender.js';
import { PLAIN_SENDER } from './memory-peers.js';
import { memoryChannelPair } from './plain-channel.js';

export interface MemorySessionResult {
  sender: SenderResult | Error;
  receiver: ReceiverResult | Error;
}

export async function runMemorySession(
  src: string,
  dst: string,
  opts: Partial<SenderOptions> = {},
  /** The sender's entries, instead of a walk of `src` (e.g. a walk taken earlier). */
  source?: AsyncIterable<readonly SourceEntry[]>,
): Promise<MemorySessionResult> {
  const [sc, rc] = memoryChannelPair();
  const pending: Promise<unknown>[] = [];
  let session: ReceiverSession | undefined;
  const joins: Array<() => void> = [];
  const full: SenderOptions = { ...PLAIN_SENDER, chunkSize: 256 * 1024, ...opts };
  full.openStream = async (): Promise<FrameChannel> => {
    const [a, b] = memoryChannelPair();
    pending.push(
      (async () => {
        const o = await readOpening(b);
        if (o.kind !== 'join') throw new Error('expected JOIN');
        const add = (): void => session!.addStream(b, o.frames, o.join.stream);
        if (session) add();
        else joins.push(add);
      })(),
    );
    return a;
  };
  const receiverP = (async () => {
    const o = await readOpening(rc);
    if (o.kind !== 'session') throw new Error('expected SESSION');
    const sink = await SafeWriter.open(dst, { dryRun: (o.session.flags & 4) !== 0 });
    session = new ReceiverSession(rc, o.frames, o.session, sink);
    for (const j of joins.splice(0)) j();
    try {
      return await session.run();
    } finally {
      sink.close(); // as modes/recv.ts does
    }
  })();
  const root = await resolveSource(src);
  const exclude = full.excludes.length > 0 ? compileExcludes(full.excludes) : undefined;
  const entries = source ?? walk(root, exclude ? { exclude } : {});
  const senderP = runSender(sc, entries, full);
  const [s, r] = await Promise.allSettled([senderP, receiverP]);
  await Promise.allSettled(pending);
  return {
    sender: s.status === 'fulfilled' ? s.value : (s.reason as Error),
    receiver: r.status === 'fulfilled' ? r.value : (r.reason as Error),
  };
}
