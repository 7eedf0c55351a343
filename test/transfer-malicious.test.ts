/**
 * Hand-crafted hostile peers, one test per attack (like node-tar's test/ghsa-*): a sender
 * that tries to make the receiver write outside DST or allocate without bound, and
 * a receiver that tries to make the sender misbehave. Every one must end with
 * FERRY_E_PATH / FERRY_E_PROTOCOL and nothing written outside DST.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { contentHashOf } from '../src/fs/checksum.js';
import { readOpening } from '../src/transfer/receiver.js';
import {
  Action,
  ByteWriter,
  HASH_BYTES,
  MsgType,
  TRANSFER_VERSION,
  decodeDecisions,
  decodeManifest,
  encodeCount,
  encodeDecisions,
  encodeManifest,
  encodeSession,
  encodeSummary,
  writeBegin,
  writeChunkHeader,
  writeEnd,
  type WireEntry,
} from '../src/wire/messages.js';
import { expectCode, memoryHostileReceiver, memoryHostileSender } from './support/memory-peers.js';
import { memoryChannelPair } from './support/plain-channel.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const NOW = 1_700_000_000_000_000_000n;

function file(index: number, p: string, size: number): WireEntry {
  return { index, kind: 'file', path: p, size, mode: 0o644, mtimeNs: NOW };
}

async function listAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) out.push(path.relative(dir, path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)));
  return out.sort();
}

async function sandbox(): Promise<{ root: string; dst: string }> {
  const root = await tmpDir('ferry-evil-');
  const dst = path.join(root, 'dst');
  await fsp.mkdir(dst);
  return { root, dst };
}

test('attack: ../ traversal in a manifest path is refused (FERRY_E_PATH), nothing written', async () => {
  const { root, dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, '../escape.txt', 4)], false));
  await expectCode(h.outcome, 'FERRY_E_PATH');
  assert.deepEqual(await listAll(root), ['dst']);
});

test('attack: absolute path is refused (FERRY_E_PATH)', async () => {
  const { root, dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, `${root}/abs.txt`, 4)], false));
  await expectCode(h.outcome, 'FERRY_E_PATH');
  assert.deepEqual(await listAll(root), ['dst']);
});

test('attack: a symlink, then a file through it, is refused before anything is written', async () => {
  const { root, dst } = await sandbox();
  const outside = path.join(root, 'outside');
  await fsp.mkdir(outside);
  const h = await memoryHostileSender(dst);
  const link: WireEntry = { index: 0, kind: 'symlink', path: 'evil', size: 0, mode: 0o777, mtimeNs: NOW, target: outside };
  await h.ch.send(MsgType.MANIFEST, encodeManifest([link, file(1, 'evil/pwned.txt', 4)], false));
  await expectCode(h.outcome, 'FERRY_E_PATH');
  assert.deepEqual(await fsp.readdir(outside), []);
  assert.deepEqual(await listAll(dst), []);
});

test('attack: a symlink already in DST is never written through', async () => {
  const { root, dst } = await sandbox();
  const outside = path.join(root, 'outside');
  await fsp.mkdir(outside);
  await fsp.symlink(outside, path.join(dst, 'sub'));
  const h = await memoryHostileSender(dst);
  const dir: WireEntry = { index: 0, kind: 'dir', path: 'sub', size: 0, mode: 0o755, mtimeNs: NOW };
  await h.ch.send(MsgType.MANIFEST, encodeManifest([dir, file(1, 'sub/pwned.txt', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(2));
  const d = await h.frames.next();
  // The writer replaces the symlink with a real directory (rsync -a does the same).
  assert.equal(d.value?.type, MsgType.DECISIONS);
  const w = new ByteWriter();
  writeBegin(w, 1, 0, 0, 4);
  writeChunkHeader(w, 0, 4);
  w.bytes(Buffer.from('evil'));
  writeEnd(w, contentHashOf(Buffer.from('evil')));
  await h.ch.send(MsgType.DATA, w.take());
  await h.frames.next(); // COMMITTED
  const summary = await h.frames.next();
  assert.equal(summary.value?.type, MsgType.SUMMARY);
  await h.ch.close();
  await h.outcome;
  assert.deepEqual(await fsp.readdir(outside), []);
  assert.equal((await fsp.lstat(path.join(dst, 'sub'))).isDirectory(), true);
});

test('attack: data longer than the file it belongs to is refused (FERRY_E_PROTOCOL)', async () => {
  const { dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'small.txt', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  await h.frames.next();
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, 1 << 30);
  await h.ch.send(MsgType.DATA, w.take());
  await expectCode(h.outcome, 'FERRY_E_PROTOCOL');
  assert.deepEqual(await listAll(dst), []);
});

test('attack: a chunk length beyond the frame (oversized length field) is refused without allocating', async () => {
  const { dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'small.txt', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  await h.frames.next();
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, 4);
  w.u8(2).varint(0).varint(2 ** 40); // CHUNK claiming a terabyte
  await h.ch.send(MsgType.DATA, w.take());
  await expectCode(h.outcome, 'FERRY_E_PROTOCOL');
});

test('attack: data for a file the receiver did not ask for (already up to date) is refused', async () => {
  const { dst } = await sandbox();
  await fsp.writeFile(path.join(dst, 'same.txt'), 'same');
  await fsp.utimes(path.join(dst, 'same.txt'), 1_700_000_000, 1_700_000_000);
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'same.txt', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  const d = await h.frames.next();
  assert.deepEqual(decodeDecisions(d.value!.payload).map((x) => x.action), [Action.SKIP]);
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, 4);
  await h.ch.send(MsgType.DATA, w.take());
  await expectCode(h.outcome, 'FERRY_E_PROTOCOL');
  assert.equal(await fsp.readFile(path.join(dst, 'same.txt'), 'utf8'), 'same');
});

test('attack: a wrong end-to-end hash never publishes the file', async () => {
  const { dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  await h.ch.send(MsgType.MANIFEST, encodeManifest([file(0, 'f.txt', 4)], false));
  await h.ch.send(MsgType.MANIFEST_END, encodeCount(1));
  await h.frames.next();
  const w = new ByteWriter();
  writeBegin(w, 0, 0, 0, 4);
  writeChunkHeader(w, 0, 4);
  w.bytes(Buffer.from('evil'));
  writeEnd(w, new Uint8Array(HASH_BYTES));
  await h.ch.send(MsgType.DATA, w.take());
  await h.frames.next(); // FAILED
  await h.frames.next(); // SUMMARY
  await h.ch.close();
  const r = (await h.outcome) as { summary: { failed: number } };
  assert.equal(r.summary.failed, 1);
  assert.deepEqual(await listAll(dst), []);
});

test('attack: hard link to a path that was never sent is refused', async () => {
  const { dst } = await sandbox();
  const h = await memoryHostileSender(dst);
  const hl: WireEntry = { index: 0, kind: 'hardlink', path: 'x', size: 0, mode: 0o644, mtimeNs: NOW, target: 'etc/passwd' };
  await h.ch.send(MsgType.MANIFEST, encodeManifest([hl], false));
  await expectCode(h.outcome, 'FERRY_E_PROTOCOL');
});

/** A hostile receiver: answers the sender's manifest with crafted decisions. */
async function hostileReceiver(answer: (manifest: WireEntry[]) => Uint8Array): Promise<unknown> {
  const root = await tmpDir('ferry-evil-');
  await makeTree(path.join(root, 'src'), { 'a.txt': 'aaaa', 'b.txt': 'bbbbbbbb' });
  const h = await memoryHostileReceiver(path.join(root, 'src'));
  const m = await h.frames.next();
  const entries = decodeManifest(m.value!.payload, false);
  await h.ch.send(MsgType.DECISIONS, answer(entries)).catch(() => undefined);
  await h.ch.send(MsgType.SUMMARY, encodeSummary({ committed: 0, skipped: 0, failed: 0, dirs: 0, symlinks: 0, hardlinks: 0, deleted: 0, bytesWritten: 0, resumedBytes: 0 })).catch(() => undefined);
  return h.outcome;
}

test('protocol attack: unknown session flag bits', async () => {
  // A flag or extension policy bit this receiver does not know is a request it would
  // silently not honour (a newer sender's option): FERRY_E_PROTOCOL before anything is opened.
  const bad = [
    { version: TRANSFER_VERSION, flags: 0x80, streams: 1, chunkSize: 65536, excludes: [] },
    { version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [], policy: 0x10 },
    { version: TRANSFER_VERSION, flags: 0, streams: 1, chunkSize: 65536, excludes: [], policy: 0x80 },
  ];
  for (const session of bad) {
    const [s, r] = memoryChannelPair();
    const opening = readOpening(r);
    await s.send(MsgType.SESSION, encodeSession(session));
    await expectCode(opening, 'FERRY_E_PROTOCOL');
    await assert.rejects(opening, /unknown (flag|policy) bits/);
  }
});

test('hostile receiver: a decision for an index never sent is FERRY_E_PROTOCOL', async () => {
  await expectCode(hostileReceiver(() => encodeDecisions([{ index: 999, action: Action.SEND, offset: 0 }])), 'FERRY_E_PROTOCOL');
});

test('hostile receiver: a resume offset past the size is FERRY_E_PROTOCOL', async () => {
  await expectCode(
    hostileReceiver((es) => encodeDecisions([{ index: es[0]!.index, action: Action.RESUME, offset: 1 << 20, prefixHash: new Uint8Array(HASH_BYTES) }])),
    'FERRY_E_PROTOCOL',
  );
});

test('hostile receiver: two decisions for one file is FERRY_E_PROTOCOL', async () => {
  await expectCode(
    hostileReceiver((es) =>
      encodeDecisions([
        { index: es[0]!.index, action: Action.SKIP, offset: 0 },
        { index: es[0]!.index, action: Action.SEND, offset: 0 },
      ]),
    ),
    'FERRY_E_PROTOCOL',
  );
});

test('hostile receiver: a summary before every file was confirmed is FERRY_E_PROTOCOL', async () => {
  await expectCode(hostileReceiver(() => encodeDecisions([])), 'FERRY_E_PROTOCOL');
});
