/**
 * The reports transfer protocol 3 added (QUEUED, DELETED) come from the receiver, so
 * the sender checks them like everything else it is told (one test per lie): a
 * DELETED the sender did not ask for, a deletion count SUMMARY contradicts, a QUEUED
 * with a payload, are FERRY_E_PROTOCOL. The honest forms reach the sender's events.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { MsgType, decodeDeleted, encodeDeleted, encodeSessionOk, encodeSummary, type SummaryMsg } from '../src/wire/messages.js';
import { hostileReceiver } from './support/hostile-peer.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const ZERO: SummaryMsg = { committed: 0, skipped: 0, failed: 0, dirs: 0, symlinks: 0, hardlinks: 0, deleted: 0, bytesWritten: 0, resumedBytes: 0 };

test('DELETED round-trips, names directories, and is capped', () => {
  const items = [{ path: 'a/b', dir: false }, { path: 'dir', dir: true }];
  assert.deepEqual(decodeDeleted(encodeDeleted(items)), items);
  assert.throws(() => decodeDeleted(Buffer.from([1, 2, 1, 0x61])), /unknown kind 2/);
  assert.throws(() => decodeDeleted(encodeDeleted(Array.from({ length: 4097 }, (_, i) => ({ path: `f${i}`, dir: false })))), /exceeds 4096/);
});

/** A sender of an empty tree against a hostile receiver that answers with `replies` after MANIFEST_END. */
async function against(replies: { type: number; payload: Uint8Array }[], opts: { delete?: boolean } = {}) {
  const src = path.join(await tmpDir('ferry-reports-'), 'src');
  await makeTree(src, { 'd/': { type: 'dir' } });
  const deleted: string[] = [];
  let queued = 0;
  const run = await hostileReceiver(`${src}/`, {
    delete: opts.delete ?? false,
    events: { onDeleted: (p, dir) => deleted.push(dir ? `${p}/` : p), onQueued: () => queued++ },
  });
  const before = replies.filter((r) => r.type === MsgType.QUEUED);
  for (const r of before) await run.peer.send(r.type, r.payload);
  await run.peer.send(MsgType.SESSION_OK, encodeSessionOk(new Uint8Array(16)));
  for (;;) {
    const next = run.peer.next();
    next.catch(() => undefined);
    const f = await Promise.race([next, run.outcome.then(() => null, () => null)]); // null: the sender gave up already
    if (f === null || f.type === MsgType.MANIFEST_END) break;
  }
  for (const r of replies.filter((x) => x.type !== MsgType.QUEUED)) await run.peer.send(r.type, r.payload);
  await run.peer.end().catch(() => undefined);
  const outcome = await run.outcome.then(
    (o) => o,
    (e: Error) => e,
  );
  return { outcome, deleted, queued };
}

test('honest reports reach the sender: QUEUED once (however often repeated), each deletion listed', async () => {
  const q = { type: MsgType.QUEUED, payload: new Uint8Array(0) };
  const r = await against(
    [q, q, q, { type: MsgType.DELETED, payload: encodeDeleted([{ path: 'old', dir: true }, { path: 'x.txt', dir: false }]) }, { type: MsgType.SUMMARY, payload: encodeSummary({ ...ZERO, dirs: 1, deleted: 2 }) }],
    { delete: true },
  );
  assert.ok(!(r.outcome instanceof Error), String(r.outcome));
  assert.equal(r.queued, 1);
  assert.deepEqual(r.deleted, ['old/', 'x.txt']);
});

test('lie: DELETED in a session without --delete is FERRY_E_PROTOCOL', async () => {
  const r = await against([{ type: MsgType.DELETED, payload: encodeDeleted([{ path: 'x', dir: false }]) }, { type: MsgType.SUMMARY, payload: encodeSummary({ ...ZERO, deleted: 1 }) }]);
  assert.ok(r.outcome instanceof Error && (r.outcome as { code?: string }).code === 'FERRY_E_PROTOCOL', String(r.outcome));
});

test('lie: SUMMARY counts deletions DELETED did not list is FERRY_E_PROTOCOL', async () => {
  const r = await against([{ type: MsgType.DELETED, payload: encodeDeleted([{ path: 'x', dir: false }]) }, { type: MsgType.SUMMARY, payload: encodeSummary({ ...ZERO, deleted: 5 }) }], { delete: true });
  assert.ok(r.outcome instanceof Error && (r.outcome as { code?: string }).code === 'FERRY_E_PROTOCOL', String(r.outcome));
  assert.match(String(r.outcome), /SUMMARY counts 5 deletions, DELETED listed 1/);
});

test('lie: QUEUED with a payload is FERRY_E_PROTOCOL', async () => {
  const r = await against([{ type: MsgType.QUEUED, payload: new Uint8Array([1]) }]);
  assert.ok(r.outcome instanceof Error && (r.outcome as { code?: string }).code === 'FERRY_E_PROTOCOL', String(r.outcome));
});
