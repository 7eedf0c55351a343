// The tree walker (fs/walk.ts): trailing-slash rule, order, hard links, excludes, warnings.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ErrorCodes, FerryError } from '../src/core/errors.js';
import { compileExcludes } from '../src/fs/exclude.js';
import { resolveSource, walk, walkAll } from '../src/fs/walk.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

async function sample(): Promise<string> {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: Record<string, string | { type: 'hardlink'; target: string } | { type: 'symlink'; target: string }> = {
    'a/b/c/deep.txt': 'deep',
    'a/one.txt': '1',
    'top.txt': 'top',
    'h1': 'linked',
    'a/h2': { type: 'hardlink', target: 'h1' },
    'a/b/h3': { type: 'hardlink', target: 'h1' },
    'ln': { type: 'symlink', target: 'a/one.txt' },
  };
  for (let i = 0; i < 300; i++) spec[`many/f${i}`] = String(i);
  await makeTree(src, spec);
  return src;
}

test('trailing-slash rule: SRC/ gives contents, SRC gives SRC/<name>', async () => {
  const src = await sample();
  const r1 = await resolveSource(src + '/');
  assert.equal(r1.prefix, '');
  const r2 = await resolveSource(src);
  assert.equal(r2.prefix, 'src');
  const e1 = await walkAll(r1);
  const e2 = await walkAll(r2);
  assert.ok(e1.some((e) => e.path === 'top.txt'));
  assert.equal(e2[0]?.path, 'src');
  assert.equal(e2[0]?.kind, 'dir');
  assert.ok(e2.every((e) => e.path === 'src' || e.path.startsWith('src/')));
  assert.equal(e2.length, e1.length + 1);
});

test('single file source and missing source', async () => {
  const src = await sample();
  const r = await resolveSource(path.join(src, 'top.txt'));
  assert.equal(r.kind, 'file');
  const all = await walkAll(r);
  assert.deepEqual(all.map((e) => [e.path, e.kind, e.size]), [['top.txt', 'file', 3]]);
  await assert.rejects(resolveSource(path.join(src, 'nope')), (e: unknown) => e instanceof FerryError && e.code === ErrorCodes.SRC_MISSING);
});

test('parents come before children; every entry once; streamed in batches', async () => {
  const src = await sample();
  const seen = new Set<string>();
  let batches = 0;
  for await (const batch of walk(await resolveSource(src + '/'), { concurrency: 8, dirConcurrency: 3 })) {
    batches++;
    for (const e of batch) {
      const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
      if (parent !== '') assert.ok(seen.has(parent), `${e.path} before its parent`);
      assert.ok(!seen.has(e.path), `${e.path} twice`);
      seen.add(e.path);
    }
  }
  assert.ok(batches > 1);
  assert.equal(seen.size, 300 + 1 + 3 + 1 + 1 + 1 + 3 + 1); // many/*, many, a a/b a/b/c, deep, one, top, h1 h2 h3, ln
});

test('hard links: first emitted is a file, the rest point at it', async () => {
  const src = await sample();
  const all = await walkAll(await resolveSource(src + '/'));
  const group = all.filter((e) => ['h1', 'a/h2', 'a/b/h3'].includes(e.path));
  const files = group.filter((e) => e.kind === 'file');
  assert.equal(files.length, 1);
  for (const e of group.filter((x) => x.kind === 'hardlink')) {
    assert.equal(e.target, files[0]!.path);
    assert.ok(all.indexOf(e) > all.indexOf(files[0]!));
  }
  const ln = all.find((e) => e.path === 'ln')!;
  assert.equal(ln.kind, 'symlink');
  assert.equal(ln.target, 'a/one.txt');
});

test('excludes: excluded directories are not descended; an excluded first link does not dangle', async () => {
  const src = await sample();
  const all = await walkAll(await resolveSource(src + '/'), { exclude: compileExcludes(['many/', 'h1', '*.txt']) });
  const paths = all.map((e) => e.path);
  assert.ok(!paths.some((p) => p.startsWith('many')));
  assert.ok(!paths.some((p) => p.endsWith('.txt')));
  const links = all.filter((e) => e.path === 'a/h2' || e.path === 'a/b/h3');
  assert.equal(links.filter((e) => e.kind === 'file').length, 1);
});

test('FIFOs are reported as FERRY_E_UNSUPPORTED and skipped; ferry temp files are skipped', async () => {
  const src = await sample();
  execFileSync('mkfifo', [path.join(src, 'pipe')]);
  await fsp.writeFile(path.join(src, '.ferry-0123abcd.top.txt.part'), 'partial');
  const problems: FerryError[] = [];
  const all = await walkAll(await resolveSource(src + '/'), { onProblem: (e) => problems.push(e) });
  assert.ok(!all.some((e) => e.path === 'pipe' || e.path.startsWith('.ferry-')));
  assert.deepEqual(problems.map((p) => [p.code, p.subject]), [[ErrorCodes.UNSUPPORTED, 'pipe']]);
});

test('metadata: mode, size, mtime in ns, allocated', async () => {
  const base = await tmpDir();
  await makeTree(base, { f: { type: 'file', content: 'abc', mode: 0o640, mtime: 1_500_000_000_123_456_789n } });
  const [e] = await walkAll(await resolveSource(path.join(base, 'f')));
  assert.equal(e!.mode, 0o640);
  assert.equal(e!.size, 3);
  const st = await fsp.stat(path.join(base, 'f'), { bigint: true });
  assert.equal(e!.mtimeNs, st.mtimeNs);
  assert.equal(e!.ino, st.ino);
});

test('a file name that is not valid UTF-8 is reported, not skipped in silence', async () => {
  const base = await tmpDir();
  // A Buffer path lets the test create a name with a raw 0xff byte.
  await fsp.writeFile(Buffer.concat([Buffer.from(`${base}/bad-`), Buffer.from([0xff]), Buffer.from('-name')]), 'x');
  await fsp.writeFile(path.join(base, 'good'), 'y');
  const problems: FerryError[] = [];
  const all = await walkAll(await resolveSource(base + '/'), { onProblem: (e) => problems.push(e) });
  assert.deepEqual(all.map((e) => e.path), ['good']);
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.code, ErrorCodes.READ);
  assert.match(problems[0]!.message, /not valid UTF-8/);
});

test('SRC/ where SRC is a symlink to a directory: that one link is followed (rsync), links below it are not', async () => {
  for (const statMode of ['sync', 'async'] as const) {
    const base = await tmpDir();
    await makeTree(path.join(base, 'real'), { 'd/f.txt': 'f', top: 't', 'd/ln': { type: 'symlink', target: '../top' } });
    await fsp.symlink(path.join(base, 'real'), path.join(base, 'via'));
    const problems: FerryError[] = [];
    const all = await walkAll(await resolveSource(path.join(base, 'via') + '/'), { statMode, onProblem: (e) => problems.push(e) });
    assert.deepEqual(problems, []);
    assert.deepEqual(all.map((e) => `${e.kind} ${e.path}`).sort(), ['dir d', 'file d/f.txt', 'file top', 'symlink d/ln'], statMode);
  }
});

// A consumer that leaves early (an error in its loop, a connection that never came)
// must not leave producers parked with their directories open. Counted through
// /proc/self/fd; both the native and the readdir listing.
for (const native of [true, false]) {
  test(`a walk left early closes every directory it holds (${native ? 'native' : 'readdir'} listing)`, async (t) => {
    if (!(await fsp.stat('/proc/self/fd').catch(() => null))) return t.skip('needs /proc/self/fd');
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const spec: Record<string, string> = {};
    for (let d = 0; d < 8; d++) for (let i = 0; i < 40; i++) spec[`d${d}/f${i}`] = 'x';
    await makeTree(src, spec);
    const openFds = async (): Promise<number> => (await fsp.readdir('/proc/self/fd')).length;
    const before = await openFds();
    const it = walk(await resolveSource(src + '/'), { native, concurrency: 8, dirConcurrency: 4, highWater: 8 });
    const first = await it.next();
    assert.equal(first.done, false);
    // Let the producers run into the high-water mark and park, each holding its directory.
    await new Promise((r) => setTimeout(r, 100));
    assert.ok((await openFds()) > before, 'the parked producers hold directories open');
    await it.return(undefined);
    for (let i = 0; i < 50 && (await openFds()) > before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await openFds(), before);
  });
}
