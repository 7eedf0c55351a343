// modes/copy at library level: change detection (injectable hook), sparse files,
// dry run, hard links, no temp leftovers after failures.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ErrorCodes } from '../src/core/errors.js';
import { runCopy } from '../src/modes/copy.js';
import { cleanupTmpDirs, compareTrees, makeTree, snapshotTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

async function listAll(root: string): Promise<string[]> {
  return [...(await snapshotTree(root, { hash: false })).keys()];
}

test('FERRY_E_CHANGED: a source that grows while being copied is not published', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, { 'grow.bin': Buffer.alloc(100_000, 1), 'ok.txt': 'fine' });
  const r = await runCopy({
    src: src + '/',
    dst: path.join(base, 'dst'),
    hooks: {
      afterData: async (e) => {
        if (e.path === 'grow.bin') await fsp.appendFile(e.absPath, 'more data');
      },
    },
  });
  assert.equal(r.counters.failed, 1);
  assert.equal(r.errors[0]?.code, ErrorCodes.CHANGED);
  assert.equal(r.errors[0]?.subject, 'grow.bin');
  assert.deepEqual(await listAll(path.join(base, 'dst')), ['ok.txt']);
  // A re-run (source now stable) copies it.
  const r2 = await runCopy({ src: src + '/', dst: path.join(base, 'dst') });
  assert.equal(r2.counters.failed, 0);
  assert.equal(r2.counters.copied, 1);
  assert.deepEqual(await compareTrees(src, path.join(base, 'dst')), []);
});

test('FERRY_E_CHANGED: a source rewritten with the same size (mtime changes) is not published', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, { f: { type: 'file', content: 'aaaa', mtime: 1_500_000_000_000_000_000n } });
  const r = await runCopy({
    src: src + '/',
    dst: path.join(base, 'dst'),
    hooks: { afterData: (e) => fsp.writeFile(e.absPath, 'bbbb') },
  });
  assert.equal(r.errors[0]?.code, ErrorCodes.CHANGED);
  assert.deepEqual(await listAll(path.join(base, 'dst')), []);
});

test('sparse files stay sparse (st_blocks of the copy)', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, {
    holes: { type: 'sparse', size: 8 * 1024 * 1024, data: [{ offset: 0, content: 'head' }, { offset: 4 * 1024 * 1024, content: 'middle' }] },
  });
  const sst = await fsp.stat(path.join(src, 'holes'));
  if (sst.blocks * 512 >= sst.size) {
    // The filesystem under os.tmpdir() does not do holes: nothing to preserve.
    return;
  }
  const r = await runCopy({ src: src + '/', dst: path.join(base, 'dst') });
  assert.equal(r.counters.failed, 0);
  const dst = await fsp.stat(path.join(base, 'dst/holes'));
  assert.equal(dst.size, 8 * 1024 * 1024);
  assert.ok(dst.blocks * 512 < 1024 * 1024, `copy allocates ${dst.blocks * 512} bytes`);
  assert.deepEqual(await compareTrees(src, path.join(base, 'dst'), { checkSparse: true }), []);
});

test('dry run writes nothing and counts what it would copy', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, { 'a/b': 'x', c: 'y', 'e/': { type: 'dir' } });
  const r = await runCopy({ src: src + '/', dst: path.join(base, 'dst'), dryRun: true });
  assert.equal(r.counters.copied, 2);
  await assert.rejects(fsp.access(path.join(base, 'dst')));
});

test('hard links inside the tree stay hard links, also with a small queue depth', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: Record<string, string | { type: 'hardlink'; target: string }> = { 'x/orig': 'shared' };
  for (let i = 0; i < 20; i++) spec[`y${i}/link`] = { type: 'hardlink', target: 'x/orig' };
  await makeTree(src, spec);
  const r = await runCopy({ src: src + '/', dst: path.join(base, 'dst'), queueDepth: 1 });
  assert.equal(r.counters.failed, 0);
  assert.deepEqual(await compareTrees(src, path.join(base, 'dst')), []);
  const st = await fsp.stat(path.join(base, 'dst/x/orig'));
  assert.equal(st.nlink, 21);
});

test('re-run: the quick check from the paired listing decides each file as one lstat would, and never looks through a symlink in DST', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  const outside = path.join(base, 'outside');
  const spec: Record<string, string> = {};
  for (let i = 0; i < 300; i++) spec[`d/f${i}`] = `file ${i}`;
  spec['via/x'] = 'x';
  spec['top'] = 'top';
  await makeTree(src, spec);
  assert.equal((await runCopy({ src: src + '/', dst })).counters.copied, 302);
  // DST drifts: one file missing, one mode, one size, one mtime (same content);
  // `via` becomes a symlink to a directory holding an identical `x` (same size and
  // mtime): it must be replaced, not trusted.
  await fsp.rm(path.join(dst, 'd/f1'));
  await fsp.chmod(path.join(dst, 'd/f2'), 0o600);
  await fsp.writeFile(path.join(dst, 'd/f3'), 'longer than before');
  await fsp.utimes(path.join(dst, 'd/f4'), 1, 1);
  await fsp.cp(path.join(dst, 'via'), outside, { recursive: true, preserveTimestamps: true });
  await fsp.rm(path.join(dst, 'via'), { recursive: true });
  await fsp.symlink(outside, path.join(dst, 'via'));
  const events: string[] = [];
  const r = await runCopy({ src: src + '/', dst, onEvent: (ev) => ev.type !== 'skipped' && ev.type !== 'created-dir' && events.push(`${ev.type} ${ev.path}`) });
  assert.equal(r.counters.failed, 0, r.errors.map((e) => e.message).join('\n'));
  assert.deepEqual(events.sort(), ['copied d/f1', 'copied d/f3', 'copied via/x', 'meta-fixed d/f2', 'meta-fixed d/f4']);
  assert.equal(r.counters.skipped, 302 - 5);
  assert.deepEqual(await compareTrees(src, dst), []);
  assert.ok((await fsp.lstat(path.join(dst, 'via'))).isDirectory(), 'the symlink in DST was replaced by a directory');
});
