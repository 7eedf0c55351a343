/**
 * Issue #11, a DST parent swapped under the writer: someone who can write inside DST
 * (a local user, a concurrent process) renames a directory ferry has already checked
 * or created and puts a symlink to a directory outside DST in its place, between
 * ferry's decision and its next write there. The SafeWriter must never follow it:
 * every step that writes into DST (file data, mkdir, symlink creation, temp-file
 * cleanup, directory modes and times in finish(), --delete) happens relative to the
 * directory descriptor it verified, so it lands in the renamed real directory (inside
 * DST) or fails; nothing outside DST is created, changed or removed.
 *
 * One test per window, for local copy (modes/copy.ts, its hooks and events give the
 * exact moment) and for network receive (a hostile sender, test/support/hostile-peer,
 * against the real receiver) where the moment can be reached from outside; the
 * receiver's --delete window (between listing a directory and removing an entry of
 * it) is driven through the SafeWriter itself. The parent-swap during a received
 * file's data is in adversarial-paths.test.ts.
 *
 * "Outside" is a directory beside DST with a file, a subdirectory and a file named
 * like a ferry temp file, its modes and times fixed: any change to it is an escape.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, renameSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import type { Entry } from '../src/core/entry.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { runCopy } from '../src/modes/copy.js';
import { MsgType, SessionFlags, decodeDecisions, encodeCount, encodeManifest } from '../src/wire/messages.js';
import { dataFor, entry, hostileSender, scriptedSend } from './support/hostile-peer.js';
import { cleanupTmpDirs, makeTree, snapshotTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const OUTSIDE_TIME = 1_300_000_000_000_000_000n;
const SRC_TIME = 1_000_000_000_000_000_000n;

interface Box {
  root: string;
  src: string;
  dst: string;
  outside: string;
  before: string;
}

/** A picture of `outside` itself and everything in it (kinds, sizes, modes, times, contents). */
async function picture(outside: string): Promise<string> {
  const st = await fsp.lstat(outside, { bigint: true });
  const all = [...(await snapshotTree(outside)).entries()].map(([p, e]) => [p, { ...e, ino: String(e.ino), mtimeNs: String(e.mtimeNs) }]);
  return JSON.stringify({ self: { mode: Number(st.mode & 0o7777n), mtimeNs: String(st.mtimeNs) }, all });
}

async function box(): Promise<Box> {
  const root = await tmpDir('ferry-adv-swap-');
  const src = path.join(root, 'src');
  const dst = path.join(root, 'dst');
  const outside = path.join(root, 'outside');
  await fsp.mkdir(src);
  await fsp.mkdir(dst);
  await makeTree(outside, {
    'secret.txt': { type: 'file', content: 'SECRET', mode: 0o600, mtime: OUTSIDE_TIME },
    'e/': { type: 'dir', mode: 0o755, mtime: OUTSIDE_TIME },
    'e/keep.txt': { type: 'file', content: 'KEEP', mode: 0o644, mtime: OUTSIDE_TIME },
    '.ferry-0000abcd.junk.part': { type: 'file', content: 'not ours', mode: 0o644, mtime: OUTSIDE_TIME },
  });
  await fsp.chmod(outside, 0o755);
  const t = Number(OUTSIDE_TIME / 1_000_000_000n);
  await fsp.utimes(outside, t, t);
  return { root, src, dst, outside, before: await picture(outside) };
}

/** The attacker's move: DST/<rel> becomes DST/<rel>.real, and DST/<rel> a symlink to outside. */
function swap(b: Box, rel: string): void {
  renameSync(path.join(b.dst, rel), path.join(b.dst, `${rel}.real`));
  symlinkSync(b.outside, path.join(b.dst, rel));
}

async function assertContained(b: Box): Promise<void> {
  assert.deepEqual((await fsp.readdir(b.root)).sort(), ['dst', 'outside', 'src']);
  assert.equal(await picture(b.outside), b.before, 'something outside DST was created, changed or removed');
}

/** Nothing of ferry's temp files is left in DST (the real directories). */
async function assertNoTemps(dst: string): Promise<void> {
  const left = [...(await snapshotTree(dst, { hash: false })).keys()].filter((p) => path.basename(p).startsWith('.ferry-'));
  assert.deepEqual(left, []);
}

// --- local copy ---------------------------------------------------------------------------

test('path attack (copy): a DST parent swapped for a symlink to outside before a file is written writes nothing outside', async () => {
  const b = await box();
  await makeTree(b.src, { 'd/e/f.txt': 'DATA', 'd/e/g.txt': 'MORE' });
  let swapped = false;
  const r = await runCopy({
    src: `${b.src}/`,
    dst: b.dst,
    hooks: {
      beforeOpen: (e) => {
        if (!swapped && e.path.startsWith('d/e/')) {
          swapped = true;
          swap(b, 'd');
        }
      },
    },
  });
  assert.ok(swapped);
  await assertContained(b);
  await assertNoTemps(b.dst);
  // Each file landed in the real directory (inside DST) or failed; none was lost silently.
  for (const f of ['f.txt', 'g.txt']) {
    const there = await fsp.readFile(path.join(b.dst, 'd.real/e', f), 'utf8').catch(() => null);
    assert.ok(there !== null || r.errors.some((x) => x.subject === `d/e/${f}`), `d/e/${f}: neither written inside DST nor reported`);
  }
});

/**
 * The copy windows reached through copy's events: the tree to copy (and what DST already
 * holds), the event at which the attacker swaps DST/d, and what must hold afterwards
 * besides containment.
 */
const copyWindows: {
  window: string;
  src: Parameters<typeof makeTree>[1];
  dst?: Parameters<typeof makeTree>[1];
  delete?: boolean;
  at: { type: string; path: string };
  after?: (b: Box, r: Awaited<ReturnType<typeof runCopy>>) => Promise<void>;
}[] = [
  { window: 'before mkdir creates nothing outside', src: { 'd/n/f.txt': 'DATA' }, at: { type: 'created-dir', path: 'd' } },
  {
    window: 'before symlink creation creates nothing outside',
    src: { 'd/f.txt': 'DATA', 'd/l': { type: 'symlink', target: 'f.txt' } },
    at: { type: 'copied', path: 'd/f.txt' },
  },
  {
    // The target's name is also a file outside: a link made by path would take that one.
    window: 'before hard link creation links nothing outside',
    src: { 'd/secret.txt': 'DATA', 'd/link': { type: 'hardlink', target: 'd/secret.txt' } },
    at: { type: 'copied', path: 'd/secret.txt' },
  },
  {
    window: 'before directory chmod/utimes in finish() changes nothing outside',
    src: { 'd/': { type: 'dir', mode: 0o750, mtime: SRC_TIME }, 'd/e/': { type: 'dir', mode: 0o710, mtime: SRC_TIME }, 'd/f.txt': 'DATA' },
    at: { type: 'copied', path: 'd/f.txt' },
    after: async (b, r) => {
      // The real directories got their modes (set through their descriptors), or the failure was reported.
      const st = await fsp.stat(path.join(b.dst, 'd.real/e'));
      assert.ok((st.mode & 0o7777) === 0o710 || r.errors.length > 0, `d.real/e mode ${(st.mode & 0o7777).toString(8)}`);
    },
  },
  {
    window: 'before --delete removal removes nothing outside',
    src: { 'd/f.txt': 'DATA' },
    dst: { 'd/old.txt': 'OLD', 'd/olddir/x': 'X' },
    delete: true,
    at: { type: 'copied', path: 'd/f.txt' },
  },
];

for (const w of copyWindows) {
  test(`path attack (copy): a DST parent swapped for a symlink to outside ${w.window}`, async () => {
    const b = await box();
    await makeTree(b.src, w.src);
    if (w.dst) await makeTree(b.dst, w.dst);
    let swapped = false;
    const r = await runCopy({
      src: `${b.src}/`,
      dst: b.dst,
      ...(w.delete ? { delete: true } : {}),
      onEvent: (ev) => {
        if (!swapped && ev.type === w.at.type && 'path' in ev && ev.path === w.at.path) {
          swapped = true;
          swap(b, 'd');
        }
      },
    });
    assert.ok(swapped, `the event ${w.at.type} ${w.at.path} never came: the window was not reached`);
    await assertContained(b);
    await assertNoTemps(b.dst);
    await w.after?.(b, r);
  });
}

// --- network receive ----------------------------------------------------------------------

test('path attack (receive): a DST parent swapped for a symlink to outside before directory chmod/utimes in finish() changes nothing outside', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(
    h.peer,
    [entry(0, 'dir', 'd', { mode: 0o750, mtimeNs: SRC_TIME }), entry(1, 'dir', 'd/e', { mode: 0o710, mtimeNs: SRC_TIME }), entry(2, 'file', 'z.txt', { size: 4 })],
    new Map(),
    { onDecisions: () => swap(b, 'd') },
  );
  assert.ok(r.decisions.length > 0, 'no decisions: the swap never happened');
  await h.sessionError();
  await assertContained(b);
  await assertNoTemps(b.dst);
});

test('path attack (receive): a DST parent swapped for a symlink to outside before symlink creation creates nothing outside', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  const r = await scriptedSend(
    h.peer,
    [entry(0, 'dir', 'd'), entry(1, 'symlink', 'd/l', { target: 'f.txt' }), entry(2, 'file', 'z.txt', { size: 4 })],
    new Map(),
    { onDecisions: () => swap(b, 'd') },
  );
  assert.ok(r.decisions.length > 0, 'no decisions: the swap never happened');
  await h.sessionError();
  await assertContained(b);
  await assertNoTemps(b.dst);
});

test('path attack (receive): a DST parent swapped for a symlink to outside before mkdir (a later manifest batch) creates nothing outside', async () => {
  const b = await box();
  const h = await hostileSender(b.dst);
  // First batch: directory d and a file (so a DECISIONS frame says the batch is done).
  await h.peer.send(MsgType.MANIFEST, encodeManifest([entry(0, 'dir', 'd'), entry(1, 'file', 'z.txt', { size: 4 })], false));
  const first = await h.peer.next();
  assert.equal(first?.type, MsgType.DECISIONS);
  swap(b, 'd');
  await h.peer.send(MsgType.MANIFEST, encodeManifest([entry(2, 'dir', 'd/n'), entry(3, 'file', 'd/n/f.txt', { size: 4 })], false));
  await h.peer.send(MsgType.MANIFEST_END, encodeCount(4));
  const asked = decodeDecisions(first!.payload).map((d) => d.index);
  for (;;) {
    const f = await h.peer.next();
    if (f === null || f.type === MsgType.SUMMARY || f.type === MsgType.ERROR) break;
    if (f.type === MsgType.DECISIONS) asked.push(...decodeDecisions(f.payload).map((d) => d.index));
    for (const i of asked.splice(0)) await h.peer.send(MsgType.DATA, dataFor(i, Buffer.from('xxxx')));
  }
  await h.peer.end().catch(() => undefined);
  await h.sessionError();
  await assertContained(b);
  await assertNoTemps(b.dst);
});

test('path attack (receive): a DST parent swapped for a symlink to outside before --delete removal (between listing and removal) removes nothing outside', async () => {
  // The receiver lists a directory of DST, then removes what the manifest lacks; the
  // swap lands between the two (driven through the SafeWriter the receiver uses).
  const b = await box();
  await makeTree(b.dst, { 'd/secret.txt': 'OLD', 'd/e/keep.txt': 'OLD' });
  const w = await SafeWriter.open(b.dst);
  const d: Entry = { path: 'd', kind: 'dir', size: 0, mode: 0o755, mtimeNs: SRC_TIME };
  await w.mkdir(d);
  const names = (await w.listDir('d')).map((x) => x.name).sort();
  assert.deepEqual(names, ['e', 'secret.txt']);
  swap(b, 'd');
  for (const n of names) await w.remove(`d/${n}`).catch(() => undefined);
  await w.finish();
  await assertContained(b);
});

test('path attack (writer): a DST parent swapped for a symlink to outside before temp-file cleanup in finish() removes nothing outside', async () => {
  const b = await box();
  const w = await SafeWriter.open(b.dst);
  await w.mkdir({ path: 'd', kind: 'dir', size: 0, mode: 0o755, mtimeNs: SRC_TIME });
  const t = await w.beginFile({ path: 'd/f.txt', kind: 'file', size: 4, mode: 0o644, mtimeNs: SRC_TIME });
  await t.write(Buffer.from('DATA'), 0);
  await t.commit();
  swap(b, 'd');
  await w.finish();
  await assertContained(b);
});
