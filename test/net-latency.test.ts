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
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { resolveSource, walk } from '../src/fs/walk.js';
import { withSendHook, type FrameChannel } from '../src/secure/channel-api.js';
import { ReceiverSession, readOpening } from '../src/transfer/receiver.js';
import { runSender } from '../src/transfer/sender.js';
import { MsgType, decodeData } from '../src/wire/messages.js';
import { startProxy, type TraceChunk } from './support/delay-proxy.js';
import { lastJson, sendTo, startRecv } from './support/net-harness.js';
import { freePort, startSshd } from './support/sshd.js';
import { requireTools } from './support/tools.js';
import { memoryChannelPair } from './support/plain-channel.js';
import { FERRY_BIN, cleanupTmpDirs, compareTrees, makeTree, runFerry, tmpDir, type TreeSpec } from './support/tree.js';

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

/** A connection's trace as runs of one direction and flight: "up1 312B, down1 41B, ...". */
function flightsOf(trace: readonly TraceChunk[]): string {
  const runs: { dir: string; flight: number; bytes: number }[] = [];
  for (const c of trace) {
    const last = runs[runs.length - 1];
    if (last && last.dir === c.dir && last.flight === c.flight) last.bytes += c.bytes;
    else runs.push({ dir: c.dir, flight: c.flight, bytes: c.bytes });
  }
  return runs.map((r) => `${r.dir}${r.flight} ${r.bytes}B`).join(', ');
}

/**
 * The one-way trips of a connection, counted from the client's first bytes (its hello
 * may leave after the server's hello arrived, when loading code takes longer than a trip).
 */
function tripsOf(trace: readonly TraceChunk[]): number {
  const first = trace.find((c) => c.dir === 'up')!.flight;
  return Math.max(...trace.map((c) => c.flight)) - first + 1;
}

test('a session costs 3.5 round trips after TCP connect, counted in flights through the delaying proxy', async () => {
  const root = await tmpDir('ferry-lat-');
  const src = path.join(root, 'src');
  await makeTree(src, smallFiles(100));
  const dst = path.join(root, 'dst');
  const rv = await startRecv(dst);
  // A long delay keeps the data (a few frames) well inside one flight.
  const proxy = await startProxy({ targetPort: rv.port, delayMs: 50 });
  try {
    const s = await sendTo(`${src}/`, proxy.port, ['-P', '1', '--json'], {}, 120_000).done;
    const rr = await rv.done;
    assert.equal(s.code, 0, s.stderr);
    assert.equal(rr.code, 0, rr.stderr);
    assert.equal(lastJson(s.stdout)['committed'], 100);
    assert.equal(proxy.connections, 1);
    const trace = proxy.trace(0);
    const trips = tripsOf(trace);
    // One-way trips: 1 the client's hello and share, 2 the server's share and
    // confirmation, 3 the client's confirmation with SESSION and the whole manifest
    // (not waiting for SESSION_OK), 4 SESSION_OK and the decisions, 5 the data,
    // 6 the summary with the receiver's end of stream, 7 the sender's end of stream.
    assert.ok(trips <= 7, `the session took ${trips} one-way trips: ${flightsOf(trace)}`);
  } finally {
    await proxy.close();
  }
  assert.deepEqual(await compareTrees(src, dst), []);
});


test('ssh mode: the data connection costs the same trips as a direct session (push 7, pull 8)', async (t) => {
  if (!requireTools(t, 'sshd', 'ssh', 'ssh-keygen')) return;
  const root = await tmpDir('ferry-lat-');
  const src = path.join(root, 'src');
  await makeTree(src, smallFiles(100));
  const sshd = await startSshd();
  try {
    for (const direction of ['push', 'pull'] as const) {
      // The remote listens where the proxy forwards to (the bench's wan suite does the same).
      const listen = await freePort();
      const proxy = await startProxy({ targetPort: listen, delayMs: 50 });
      const wrapper = path.join(root, `remote-${direction}.sh`);
      writeFileSync(wrapper, `#!/bin/sh\nFERRY_TEST_SSH_LISTEN_PORT=${listen} exec ${JSON.stringify(FERRY_BIN)} "$@"\n`, { mode: 0o755 });
      const dst = path.join(root, `dst-${direction}`);
      const operands = direction === 'push' ? [`${src}/`, `127.0.0.1:${dst}/`] : [`127.0.0.1:${src}/`, `${dst}/`];
      try {
        const r = await runFerry(['-e', sshd.sshCommand, '--remote-ferry', wrapper, '--progress=never', ...operands], {
          env: { FERRY_TEST_SSH_DIRECT: `127.0.0.1:${proxy.port}` },
          timeoutMs: 120_000,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(proxy.connections, 1, 'the data took the direct connection');
        const trace = proxy.trace(0);
        // The client (the local side) is the receiver when pulling: SESSION and the
        // manifest come with the trip after its confirmation, one trip later than a push.
        const limit = direction === 'push' ? 7 : 8;
        assert.ok(tripsOf(trace) <= limit, `${direction}: ${tripsOf(trace)} one-way trips: ${flightsOf(trace)}`);
      } finally {
        await proxy.close();
      }
      assert.deepEqual(await compareTrees(src, dst), []);
    }
  } finally {
    await sshd.stop();
  }
});
