/**
 * The benchmark's own correctness: datasets are deterministic and of the asked
 * shape, and the tree comparison that validates every benchmark figure really
 * catches each kind of difference (content, size, mode, missing, extra, type,
 * symlink target). A comparison that always said "equal" would make every
 * benchmark number meaningless, so each case is checked to fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, cp, mkdtemp, readFile, rm, symlink, unlink, writeFile, mkdir, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileSizes, filePath, generateDataset, type DatasetShape } from '../bench/datasets.js';
import { compareToSnapshot, snapshotTree } from '../bench/verify.js';
import { median } from '../bench/stats.js';

const shape: DatasetShape = { files: 25, minSize: 100, maxSize: 3000, perDir: 10, seed: 'test' };

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-test-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('generateDataset is deterministic, sized as asked, laid out perDir a directory', async () => {
  await withTmp(async (dir) => {
    const a = await generateDataset(join(dir, 'a'), shape);
    const b = await generateDataset(join(dir, 'b'), shape);
    assert.equal(a.files, 25);
    assert.equal(a.dirs, 3);
    assert.deepEqual((await readdir(join(dir, 'a'))).sort(), ['d0000', 'd0001', 'd0002']);
    const sizes = fileSizes(shape);
    assert.equal(a.bytes, sizes.reduce((x, y) => x + y, 0));
    for (let i = 0; i < 25; i++) {
      const s = sizes[i]!;
      assert.ok(s >= 100 && s <= 3000);
      const fa = await readFile(join(dir, 'a', filePath(i, 10)));
      const fb = await readFile(join(dir, 'b', filePath(i, 10)));
      assert.equal(fa.length, s);
      assert.ok(fa.equals(fb), `file ${i} identical across generations`);
    }
    // Different files have different content, and another seed gives another tree.
    const f0 = await readFile(join(dir, 'a', filePath(0, 10)));
    const f1 = await readFile(join(dir, 'a', filePath(1, 10)));
    assert.notDeepEqual(f0.subarray(0, 64), f1.subarray(0, 64));
    const c = await generateDataset(join(dir, 'c'), { ...shape, seed: 'other' });
    const fc = await readFile(join(dir, 'c', filePath(0, 10)));
    assert.notDeepEqual(fc.subarray(0, 64), f0.subarray(0, 64));
    assert.equal(c.files, 25);
    assert.equal((await stat(join(dir, 'a', filePath(3, 10)))).mode & 0o777, 0o644);
  });
});

test('compareToSnapshot: an exact copy is equal; every kind of difference is caught', async () => {
  await withTmp(async (dir) => {
    const src = join(dir, 'src');
    await generateDataset(src, shape);
    await symlink('d0000/f000000.bin', join(src, 'link'));
    const snap = await snapshotTree(src);
    assert.equal(snap.size, 25 + 3 + 1);

    const fresh = async (name: string): Promise<string> => {
      const d = join(dir, name);
      await cp(src, d, { recursive: true, verbatimSymlinks: true });
      return d;
    };
    const same = await compareToSnapshot(snap, await fresh('same'));
    assert.equal(same.ok, true, same.examples.join('; '));

    const cases: [string, (d: string) => Promise<void>, RegExp][] = [
      ['content', async (d) => {
        const p = join(d, filePath(5, 10));
        const buf = await readFile(p);
        buf[buf.length - 1]! ^= 1;
        await writeFile(p, buf);
      }, /^content: d0000\/f000005\.bin/],
      ['size', (d) => writeFile(join(d, filePath(6, 10)), 'short'), /^size: /],
      ['mode', (d) => chmod(join(d, filePath(7, 10)), 0o600), /^mode: .*600 instead of 644/],
      ['missing', (d) => unlink(join(d, filePath(24, 10))), /^missing: d0002\/f000024\.bin/],
      ['extra', (d) => writeFile(join(d, 'd0001', 'stray'), 'x'), /^extra: d0001\/stray/],
      ['type', async (d) => {
        await unlink(join(d, 'link'));
        await mkdir(join(d, 'link'));
      }, /^type: link/],
      ['symlink target', async (d) => {
        await unlink(join(d, 'link'));
        await symlink('d0000/f000001.bin', join(d, 'link'));
      }, /^symlink target: link/],
    ];
    for (const [name, damage, expect] of cases) {
      const d = await fresh(`case-${name.replace(/ /g, '_')}`);
      await damage(d);
      const r = await compareToSnapshot(snap, d);
      assert.equal(r.ok, false, `${name} not detected`);
      assert.ok(r.examples.some((e) => expect.test(e)), `${name}: ${r.examples.join('; ')}`);
    }
    const gone = await compareToSnapshot(snap, join(dir, 'does-not-exist'));
    assert.equal(gone.ok, false);
  });
});

test('median of odd and even counts', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});
