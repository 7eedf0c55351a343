/**
 * Latency: a session must cost about one round trip, not one per file (the SFTP
 * seed's lesson). Checked on the protocol's behaviour, never on wall-clock time:
 * - in memory, with every frame counted: 500 files produce a handful of decision
 *   and commit frames (batches), not hundreds, and data flows without a reply per
 *   file (DATA frames carry many files each);
 * - end to end through the delaying proxy at 40 ms RTT: the real CLI completes
 *   (generous timeout) over one connection.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { resolveSource, walk } from '../src/fs/walk.js';
import { withSendHook, type FrameChannel } from '../src/secure/channel-api.js';
import { ReceiverSession, readOpening } from '../src/transfer/receiver.js';
import { runSender } from '../src/transfer/sender.js';
import { MsgType, decodeData } from '../src/wire/messages.js';
import { startProxy } from './support/delay-proxy.js';
import { lastJson, sendTo, startRecv } from './support/net-harness.js';
import { memoryChannelPair } from './support/plain-channel.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

function smallFiles(n: number): TreeSpec {
  const s: TreeSpec = {};
  for (let i = 0; i < n; i++) s[`d${i % 5}/f${i}.txt`] = Buffer.alloc(1000 + ((i * 37) % 3000), i & 0xff);
  return s;
}

/** Wrap a channel to count the frames it sends, by type, and the DATA records. */
function counting(ch: FrameChannel, counts: Map<number, number>, begins: number[]): FrameChannel {
  return withSendHook(ch, (type, payload) => {
    counts.set(type, (counts.get(type) ?? 0) + 1);
    if (type === MsgType.DATA) {
      const p = payload instanceof Uint8Array ? payload : Buffer.concat(payload as Uint8Array[]);
      begins.push(decodeData(p).filter((r) => r.rec === 1).length);
    }
  });
}

test('500 small files: decisions and commits come in batches, data packs many files per frame', async () => {
  const root = await tmpDir('ferry-lat-');
  const src = path.join(root, 'src');
  await makeTree(src, smallFiles(500));
  const [a, b] = memoryChannelPair();
  const sent = new Map<number, number>();
  const replies = new Map<number, number>();
  const begins: number[] = [];
  const receiver = (async () => {
    const rch = counting(b, replies, []);
    const o = await readOpening(rch);
    if (o.kind !== 'session') throw new Error('expected SESSION');
    return new ReceiverSession(rch, o.frames, o.session, await SafeWriter.open(path.join(root, 'dst'))).run();
  })();
  const r = await runSender(counting(a, sent, begins), walk(await resolveSource(`${src}/`)), {
    streams: 1,
    chunkSize: 1 << 20,
    checksum: false,
    delete: false,
    dryRun: false,
    excludes: [],
    preserveSpecial: false,
  });
  await receiver;
  assert.equal(r.summary.committed, 500);
  const manifests = sent.get(MsgType.MANIFEST) ?? 0;
  // One decision frame per manifest batch: never one per file.
  assert.ok((replies.get(MsgType.DECISIONS) ?? 0) <= manifests, `decisions ${replies.get(MsgType.DECISIONS)} > manifests ${manifests}`);
  assert.ok(manifests <= 20, `manifest frames ${manifests}`);
  assert.ok((replies.get(MsgType.COMMITTED) ?? 0) <= 50, `commit frames ${replies.get(MsgType.COMMITTED)}`);
  // Data: 500 files in far fewer frames (small files packed many per frame).
  assert.equal(begins.reduce((x, y) => x + y, 0), 500);
  assert.ok(begins.length <= 50, `data frames ${begins.length}`);
  assert.deepEqual(await compareTrees(src, path.join(root, 'dst')), []);
});

test('500 small files through a 40 ms RTT proxy: completes over one connection, tree identical', async () => {
  const root = await tmpDir('ferry-lat-');
  const src = path.join(root, 'src');
  await makeTree(src, smallFiles(500));
  const dst = path.join(root, 'dst');
  const rv = await startRecv(dst);
  const proxy = await startProxy({ targetPort: rv.port, delayMs: 20 });
  try {
    const s = await sendTo(`${src}/`, proxy.port, ['-P', '1', '--json'], {}, 120_000).done;
    const rr = await rv.done;
    assert.equal(s.code, 0, s.stderr);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(lastJson(s.stdout)['committed'], 500);
    assert.equal(proxy.connections, 1);
  } finally {
    await proxy.close();
  }
  assert.deepEqual(await compareTrees(src, dst), []);
});
