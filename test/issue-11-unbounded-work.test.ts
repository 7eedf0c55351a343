/**
 * Issue #11, defect 4: unbounded work from a few bytes after authentication. Each
 * attack below costs a hostile peer a handful of bytes; each must now end cleanly
 * with a stable code instead of burning CPU, memory or time without bound:
 * - a huge hole (hashing zeros) is counted against a per-session budget (FERRY_E_LIMIT)
 *   and hashed in slices that yield to the event loop;
 * - a range of a file the receiver already gave up on is still checked against the
 *   file's size (FERRY_E_PROTOCOL);
 * - ranges that never end, holding every file slot, hit the session's progress
 *   deadline (FERRY_E_TIMEOUT);
 * - empty frames no longer grow the channel's receive queue without limit (it is
 *   bounded in frames, not only bytes);
 * - a receiver repeating FAILED for one entry is FERRY_E_PROTOCOL at the sender;
 * - a manifest longer than the session's entry cap is FERRY_E_LIMIT.
 *
 * No timed assertions: the deadline test sets a short deadline and only checks the
 * error code (the `timeout` option is a safety net that turns a hang into a failure).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { newContentHash } from '../src/fs/checksum.js';
import type { ReceiverOptions, ReceiverResult } from '../src/transfer/receiver.js';
import {
  Action,
  ByteWriter,
  HASH_BYTES,
  MsgType,
  decodeManifest,
  encodeCount,
  encodeDecisions,
  encodeFailed,
  encodeManifest,
  encodeSummary,
  writeAbort,
  writeBegin,
  writeChunkHeader,
  writeEnd,
  type WireEntry,
} from '../src/wire/messages.js';
import { channelPair, duplexPair } from './support/secure-helpers.js';
import { expectCode, memoryHostileReceiver, memoryHostileSender, type MemoryPeer } from './support/memory-peers.js';
import { sendTo, startRecv } from './support/net-harness.js';
import { cleanupTmpDirs, makeTree, runFerry, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NOW = 1_700_000_000_000_000_000n;
const SAFETY_NET = { timeout: 30_000 };

function file(index: number, p: string, size: number): WireEntry {
  return { index, kind: 'file', path: p, size, mode: 0o644, mtimeNs: NOW };
}

function dir(index: number, p: string): WireEntry {
  return { index, kind: 'dir', path: p, size: 0, mode: 0o755, mtimeNs: NOW };
}

/** A real receiver (memory-peers.ts) writing into a fresh DST, and the hostile sender's end. */
async function hostileSender(opts: ReceiverOptions = {}): Promise<MemoryPeer<ReceiverResult> & { dst: string }> {
  const dst = path.join(await tmpDir('ferry-i11-'), 'dst');
  await fsp.mkdir(dst);
  return { ...(await memoryHostileSender(dst, opts)), dst };
}

function digest(...parts: Buffer[]): Buffer {
  const h = newContentHash();
  for (const p of parts) h.update(p);
  return h.digest();
}

test('issue 11.4: a huge hole costs the receiver no more than its per-session hole budget (FERRY_E_LIMIT)', SAFETY_NET, async () => {
  // 1 GiB of zeros announced with one byte of data; the budget is 64 MiB.
  const h = await hostileSender({ maxHoleBytes: 64 << 20 });
  const size = 1 << 30;
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'sparse.img', size)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  await h.frames.next(); // DECISIONS
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, size);
  writeChunkHeader(w, size - 1, 1);
  w.bytes(Buffer.from([1]));
  writeEnd(w, new Uint8Array(HASH_BYTES));
  await h.ch.send(MsgType.DATA, w.take());
  await expectCode(h.outcome, 'FERRY_E_LIMIT');
});

test('issue 11.4: a legitimate sparse file within the budget is still received (holes hashed in slices)', SAFETY_NET, async () => {
  const h = await hostileSender({ maxHoleBytes: 64 << 20 });
  const size = 40 << 20; // more than two hashing slices of zeros
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'sparse.img', size)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  await h.frames.next(); // DECISIONS
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, size);
  writeChunkHeader(w, 20 << 20, 4);
  w.bytes(Buffer.from('data'));
  writeEnd(w, digest(Buffer.alloc(20 << 20), Buffer.from('data'), Buffer.alloc(size - (20 << 20) - 4)));
  await h.ch.send(MsgType.DATA, w.take());
  for (;;) {
    const f = await h.frames.next();
    if (f.done || f.value.type === MsgType.SUMMARY) break;
  }
  await h.ch.close();
  const r = (await h.outcome) as { summary: { committed: number } };
  assert.equal(r.summary.committed, 1);
  const st = await fsp.stat(path.join(h.dst, 'sparse.img'));
  assert.equal(st.size, size);
});

test('issue 11.4: a range of a file the receiver gave up on is still bounded by its size (FERRY_E_PROTOCOL)', SAFETY_NET, async () => {
  const h = await hostileSender();
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'a.bin', 4), file(1, 'b.bin', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(2));
  await h.frames.next(); // DECISIONS
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, 4);
  writeAbort(w, 0, 'FERRY_E_READ', 'gone'); // a.bin has failed now
  writeBegin(w, 0, 0, 0, 2 ** 44); // 16 TiB of a 4-byte file
  await h.ch.send(MsgType.DATA, w.take());
  // Were it swallowed, b.bin would complete the session normally.
  const w2 = new ByteWriter();
  writeEnd(w2, new Uint8Array(HASH_BYTES));
  writeBegin(w2, 1, 0, 0, 4);
  writeChunkHeader(w2, 0, 4);
  w2.bytes(Buffer.from('bbbb'));
  writeEnd(w2, digest(Buffer.from('bbbb')));
  await h.ch.send(MsgType.DATA, w2.take()).catch(() => undefined);
  void (async () => {
    for (;;) {
      const f = await h.frames.next().catch(() => ({ done: true as const, value: undefined }));
      if (f.done || f.value.type === MsgType.SUMMARY) break;
    }
    await h.ch.close().catch(() => undefined);
  })();
  await expectCode(h.outcome, 'FERRY_E_PROTOCOL');
});

test('issue 11.4: ranges that never end, holding every file slot, hit the progress deadline (FERRY_E_TIMEOUT)', SAFETY_NET, async () => {
  const h = await hostileSender({ maxOpenFiles: 2, idleTimeoutMs: 200 });
  const n = 3;
  await h.ch.send(MsgType.MANIFEST, encodeManifest(Array.from({ length: n }, (_, i) => file(i, `f${i}.bin`, 10)), false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(n));
  await h.frames.next(); // DECISIONS
  const w = new ByteWriter();
  for (let i = 0; i < n; i++) {
    // Half of each file, properly ended: the file stays open, waiting for the other half.
    writeBegin(w, i, 0, 0, 5);
    writeChunkHeader(w, 0, 5);
    w.bytes(Buffer.from('hello'));
    writeEnd(w, digest(Buffer.from('hello')));
  }
  await h.ch.send(MsgType.DATA, w.take());
  // The sender now stays connected and silent.
  await expectCode(h.outcome, 'FERRY_E_TIMEOUT');
});

test('issue 11.4: a broken session closes its open temp files and keeps them for resume', SAFETY_NET, async () => {
  const fds = async (): Promise<number> => (await fsp.readdir('/proc/self/fd')).length;
  const before = await fds();
  const h = await hostileSender({ maxOpenFiles: 4, idleTimeoutMs: 200 });
  const n = 3;
  await h.ch.send(MsgType.MANIFEST, encodeManifest(Array.from({ length: n }, (_, i) => file(i, `f${i}.bin`, 10)), false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(n));
  await h.frames.next(); // DECISIONS
  const w = new ByteWriter();
  for (let i = 0; i < n; i++) {
    writeBegin(w, i, 0, 0, 5);
    writeChunkHeader(w, 0, 5);
    w.bytes(Buffer.from('hello'));
    writeEnd(w, digest(Buffer.from('hello')));
  }
  await h.ch.send(MsgType.DATA, w.take());
  await expectCode(h.outcome, 'FERRY_E_TIMEOUT');
  // The descriptors are closed once the queued writes are done: poll for a while.
  for (let i = 0; i < 500 && (await fds()) > before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok((await fds()) <= before, 'temp files of the broken session are still open');
  const temps = (await fsp.readdir(h.dst)).filter((x) => x.endsWith('.part'));
  assert.equal(temps.length, n);
  for (const t of temps) assert.equal((await fsp.stat(path.join(h.dst, t))).size, 5);
});

test('issue 11.4: a manifest longer than the entry cap is FERRY_E_LIMIT', SAFETY_NET, async () => {
  const h = await hostileSender({ maxEntries: 10 });
  const entries = Array.from({ length: 11 }, (_, i) => dir(i, `d${i}`));
  await h.ch.send(MsgType.MANIFEST, encodeManifest(entries, false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(entries.length));
  void (async () => {
    for (;;) {
      const f = await h.frames.next().catch(() => ({ done: true as const, value: undefined }));
      if (f.done || f.value.type === MsgType.SUMMARY) break;
    }
    await h.ch.close().catch(() => undefined);
  })();
  await expectCode(h.outcome, 'FERRY_E_LIMIT');
  assert.deepEqual(await fsp.readdir(h.dst), []);
});

test('issue 11.4: empty frames do not grow the channel receive queue without limit (bounded in frames)', SAFETY_NET, async () => {
  const [a, b] = duplexPair();
  const p = channelPair(a, b);
  const [client, server] = await Promise.all([p.client, p.server]);
  const total = 40_000;
  // Nobody reads on the server side: once its queue holds enough frames it must stop
  // reading the stream (pause), which in turn stops the client's sends.
  let sent = 0;
  const sending = (async () => {
    for (let i = 0; i < total; i++) {
      await client.send(0x20, new Uint8Array(0));
      sent++;
    }
  })();
  while (!b.isPaused() && sent < total) await new Promise((r) => setImmediate(r));
  assert.ok(b.isPaused(), `the receiving side queued all ${total} empty frames without pausing its stream`);
  assert.ok(sent < total);
  // Reading drains the queue, resumes the stream, and every frame arrives.
  let got = 0;
  for await (const f of server.frames()) {
    assert.equal(f.type, 0x20);
    if (++got === total) break;
  }
  await sending;
  assert.equal(got, total);
  client.destroy();
  server.destroy();
});

test('issue 11.4: a receiver reporting FAILED twice for one directory is FERRY_E_PROTOCOL at the sender', SAFETY_NET, async () => {
  const root = await tmpDir('ferry-i11-');
  await makeTree(path.join(root, 'src'), { 'd/a.txt': 'aaaa' });
  const { ch: r, frames, outcome: senderP } = await memoryHostileReceiver(path.join(root, 'src'));
  const entries: WireEntry[] = [];
  for (;;) {
    const m = await frames.next();
    if (m.done || m.value.type === MsgType.MANIFEST_END) break;
    if (m.value.type === MsgType.MANIFEST) entries.push(...decodeManifest(m.value.payload, false));
  }
  const d = entries.find((e) => e.kind === 'dir')!;
  const files = entries.filter((e) => e.kind === 'file');
  const item = { index: d.index, code: 'FERRY_E_WRITE', message: 'd: cannot write' };
  await r.send(MsgType.DECISIONS, encodeDecisions(files.map((f) => ({ index: f.index, action: Action.SKIP, offset: 0 }))));
  await r.send(MsgType.FAILED, encodeFailed([item])).catch(() => undefined);
  await r.send(MsgType.FAILED, encodeFailed([item])).catch(() => undefined);
  await r.send(MsgType.SUMMARY, encodeSummary({ committed: 0, skipped: 1, failed: 1, dirs: 1, symlinks: 0, hardlinks: 0, deleted: 0, bytesWritten: 0, resumedBytes: 0 })).catch(() => undefined);
  void (async () => {
    for (;;) {
      const f = await frames.next().catch(() => ({ done: true as const, value: undefined }));
      if (f.done) break;
    }
    await r.close().catch(() => undefined);
  })();
  await expectCode(senderP, 'FERRY_E_PROTOCOL');
});

test('issue 11.4: ferry recv --max-entries N refuses a larger tree: both sides exit 4 with FERRY_E_LIMIT', SAFETY_NET, async () => {
  const root = await tmpDir('ferry-i11-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  await makeTree(src, { 'a.txt': 'a', 'b.txt': 'b', 'c/d.txt': 'd', 'c/e.txt': 'e' });
  const r = await startRecv(dst, ['--max-entries', '3']);
  const s = sendTo(`${src}/`, r.port);
  const [send, recv] = await Promise.all([s.done, r.done]);
  assert.equal(recv.code, 4, recv.stderr);
  assert.equal(send.code, 4, send.stderr);
  assert.match(recv.stderr, /FERRY_E_LIMIT.*--max-entries/);
  assert.match(send.stderr, /FERRY_E_LIMIT/);
});

test('issue 11.4: bad values of the new recv limits are usage errors (exit 2)', async () => {
  for (const args of [['--max-entries', '0'], ['--max-entries', 'many'], ['--max-hole-bytes', '1X'], ['--max-hole-bytes', '-5']]) {
    const r = await runFerry(['recv', '/nonexistent-dst', '--listen', '127.0.0.1:0', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FERRY_E_USAGE/);
  }
});
