// fs/dir-handles: verified directory descriptors of DST, named through /proc/self/fd, a
// bounded number kept open, a closed one re-opened only if it is still the same
// directory; and the SafeWriter on top of them: trees with more directories than
// open handles, no descriptor left open, no write at all without /proc.
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, promises as fsp, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, FerryError } from '../src/core/errors.js';
import { DirHandles } from '../src/fs/dir-handles.js';
import { runCopy } from '../src/modes/copy.js';
import { cleanupTmpDirs, compareTrees, makeTree, tmpDir } from './support/tree.js';
import { isCI } from './support/tools.js';

after(cleanupTmpDirs);

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

test('dir handles: a name is resolved inside the opened directory even after the directory is renamed and replaced by a symlink', async () => {
  const base = await tmpDir();
  mkdirSync(path.join(base, 'dst/a'), { recursive: true });
  mkdirSync(path.join(base, 'outside'));
  const h = DirHandles.open(path.join(base, 'dst'));
  try {
    const { node } = h.openChild(h.root, 'a');
    h.pin(node);
    renameSync(path.join(base, 'dst/a'), path.join(base, 'dst/a.real'));
    symlinkSync(path.join(base, 'outside'), path.join(base, 'dst/a'));
    writeFileSync(h.at(node, 'f'), 'x');
    h.unpin(node);
    assert.deepEqual(readdirSync(path.join(base, 'outside')), []);
    assert.deepEqual(readdirSync(path.join(base, 'dst/a.real')), ['f']);
    // And a symlink is never opened as a directory.
    assert.throws(() => h.openChild(h.root, 'a'), { code: 'ENOTDIR' });
  } finally {
    h.close();
  }
});

test('dir handles: at most maxIdle stay open while unused; a pinned one is never closed', async () => {
  const base = await tmpDir();
  for (let i = 0; i < 10; i++) mkdirSync(path.join(base, `d${i}`));
  const h = DirHandles.open(base, 3);
  try {
    const nodes = Array.from({ length: 10 }, (_, i) => h.openChild(h.root, `d${i}`).node);
    assert.equal(nodes.filter((n) => n.fd >= 0).length, 3);
    assert.deepEqual(nodes.slice(7).map((n) => n.fd >= 0), [true, true, true], 'the most recently used stay');
    h.pin(nodes[0]!); // re-opened, and kept
    for (let i = 1; i < 10; i++) h.path(nodes[i]!);
    assert.ok(nodes[0]!.fd >= 0);
    assert.equal(nodes.filter((n) => n.fd >= 0).length, 4);
    h.unpin(nodes[0]!);
    assert.equal(nodes.filter((n) => n.fd >= 0).length, 3);
  } finally {
    h.close();
  }
});

for (const [how, replace] of [
  ['another real directory', (p: string, outside: string): void => {
    void outside;
    mkdirSync(p);
  }],
  ['a symlink to outside', (p: string, outside: string): void => symlinkSync(outside, p)],
] as const) {
  test(`dir handles: a closed handle whose directory was replaced by ${how} is not re-opened (FERRY_E_PATH)`, async () => {
    const base = await tmpDir();
    mkdirSync(path.join(base, 'dst/a/b'), { recursive: true });
    mkdirSync(path.join(base, 'dst/c'));
    mkdirSync(path.join(base, 'outside/b'), { recursive: true });
    const h = DirHandles.open(path.join(base, 'dst'), 1);
    try {
      const a = h.openChild(h.root, 'a').node;
      const b = h.openChild(a, 'b').node;
      h.openChild(h.root, 'c'); // closes b (one idle handle)
      assert.equal(b.fd, -1);
      renameSync(path.join(base, 'dst/a'), path.join(base, 'dst/a.real'));
      replace(path.join(base, 'dst/a'), path.join(base, 'outside'));
      if (how === 'another real directory') mkdirSync(path.join(base, 'dst/a/b'));
      assert.throws(() => h.path(b), (e: FerryError) => e.code === ErrorCodes.PATH);
    } finally {
      h.close();
    }
  });
}

test('safe writer: a tree with more directories than open handles is copied exactly (modes and times set through re-opened handles)', async () => {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  const spec: Record<string, { type: 'file'; content: string } | { type: 'dir'; mode: number; mtime: bigint }> = {};
  for (let i = 0; i < 40; i++) {
    spec[`p${i}/`] = { type: 'dir', mode: 0o750, mtime: 1_500_000_000_000_000_000n + BigInt(i) * 1_000_000_000n };
    for (let j = 0; j < 10; j++) {
      spec[`p${i}/q${j}/`] = { type: 'dir', mode: j % 2 ? 0o700 : 0o755, mtime: 1_400_000_000_000_000_000n + BigInt(j) * 1_000_000_000n };
      spec[`p${i}/q${j}/f`] = { type: 'file', content: `${i}/${j}` };
    }
  }
  await makeTree(src, spec);
  const before = openFds();
  const r = await runCopy({ src: `${src}/`, dst: path.join(base, 'dst') });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(await compareTrees(src, path.join(base, 'dst')), []);
  // A second run over the existing tree (every directory adopted, none created).
  const r2 = await runCopy({ src: `${src}/`, dst: path.join(base, 'dst'), delete: true });
  assert.deepEqual(r2.errors, []);
  assert.equal(r2.counters.copied, 0);
  assert.deepEqual(await compareTrees(src, path.join(base, 'dst')), []);
  assert.equal(openFds(), before, 'every directory descriptor is closed at the end');
});

function withoutProc(t: TestContext): boolean {
  const why =
    process.getuid?.() !== 0
      ? 'needs root, to mount over /proc in a private mount namespace'
      : spawnSync('unshare', ['-m', '--propagation', 'private', 'true']).status !== 0
        ? 'unshare -m does not work here'
        : null;
  if (why === null) return true;
  if (isCI()) throw new Error(`${why}; CI=true forbids skipping`);
  t.skip(why);
  return false;
}

test('without /proc, copy and the receiver\'s writer write nothing (FERRY_E_UNSUPPORTED) rather than fall back to path checks', async (t) => {
  if (!withoutProc(t)) return;
  const base = await tmpDir();
  await makeTree(path.join(base, 'src'), { 'a.txt': 'A', 'd/b.txt': 'B' });
  await fsp.mkdir(path.join(base, 'dst-existing'));
  const ferry = path.join(repo, 'bin/ferry');
  // recv opens its destination with SafeWriter.open like this (modes/recv.ts).
  const writer = path.join(repo, 'dist/src/fs/safe-writer.js');
  const recvOpen = `import('${writer}').then((m) => m.SafeWriter.open('${base}/dst-recv', { umask: 0o022 })).then(() => console.log('recv=opened'), (e) => console.log('recv=' + e.code))`;
  const script = [
    'mount -t tmpfs none /proc',
    `"${ferry}" copy "${base}/src/" "${base}/dst-new"; echo "new=$?"`,
    `"${ferry}" copy "${base}/src/" "${base}/dst-existing"; echo "existing=$?"`,
    `"${process.execPath}" -e "${recvOpen}"`,
  ].join('; ');
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8' });
  assert.match(r.stdout, /new=[1-9]/);
  assert.match(r.stdout, /existing=[1-9]/);
  assert.match(r.stderr, /FERRY_E_UNSUPPORTED: .*dst-new: \/proc is not mounted/);
  assert.match(r.stderr, /FERRY_E_UNSUPPORTED: .*dst-existing: \/proc is not mounted/);
  assert.match(r.stdout, /recv=FERRY_E_UNSUPPORTED/);
  assert.equal(existsSync(path.join(base, 'dst-new')), false, 'DST not even created');
  assert.equal(existsSync(path.join(base, 'dst-recv')), false, 'DST not even created');
  assert.deepEqual(readdirSync(path.join(base, 'dst-existing')), []);
});
