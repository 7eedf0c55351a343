// `ferry copy` through the real CLI (node dist/src/cli/main.js): semantics, options,
// incremental runs, --json schema, usage errors.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { mtimesEqual, setTimesPath } from '../src/fs/meta-native.js';
import { cleanupTmpDirs, compareTrees, makeTree, runFerry, snapshotTree, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

const T = (s: number): bigint => BigInt(s) * 1_000_000_000n + 123_456_789n;

/** Every entry type and the metadata cp -a keeps. */
const FULL: TreeSpec = {
  'empty.txt': { type: 'file', content: '', mode: 0o644, mtime: T(1_600_000_000) },
  'one.bin': { type: 'file', content: 'x', mode: 0o600, mtime: T(1_600_000_001) },
  'exec.sh': { type: 'file', content: '#!/bin/sh\necho hi\n', mode: 0o755, mtime: T(1_600_000_002) },
  'readonly.txt': { type: 'file', content: 'do not touch', mode: 0o444, mtime: T(1_600_000_003) },
  'data/blob.bin': Buffer.alloc(300_000, 7),
  'data/nested/deeper/leaf.txt': 'leaf',
  'empty/a/b/c/': { type: 'dir', mtime: T(1_500_000_000) },
  'private/': { type: 'dir', mode: 0o700, mtime: T(1_500_000_001) },
  'private/secret': { type: 'file', content: 's', mode: 0o400 },
  'locked/': { type: 'dir', mode: 0o555, mtime: T(1_500_000_002) },
  'locked/inside.txt': 'inside a read-only dir',
  'links/rel': { type: 'symlink', target: '../data/nested/deeper/leaf.txt', mtime: T(1_400_000_000) },
  'links/dangling': { type: 'symlink', target: 'does/not/exist' },
  'links/abs': { type: 'symlink', target: '/etc/hostname' },
  'links/dir': { type: 'symlink', target: '../data' },
  'hard/first': 'hard-linked content',
  'hard/second': { type: 'hardlink', target: 'hard/first' },
  'data/third-link': { type: 'hardlink', target: 'hard/first' },
  'sparse.img': { type: 'sparse', size: 4 * 1024 * 1024, data: [{ offset: 1024 * 1024, content: 'in the middle' }] },
  'name with spaces & ü.txt': 'unicode',
};

async function fullTree(): Promise<{ base: string; src: string }> {
  const base = await tmpDir();
  const src = path.join(base, 'src');
  await makeTree(src, FULL);
  await fsp.utimes(path.join(src, 'data'), 1_450_000_000.5, 1_450_000_000.5);
  return { base, src };
}

function json(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, `one JSON line on stdout, got: ${stdout}`);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

describe('ferry copy: trees', () => {
  test('byte-exact tree with every entry type and its metadata (ferry copy SRC/ DST)', async () => {
    const { base, src } = await fullTree();
    const dst = path.join(base, 'dst');
    const r = await runFerry(['copy', `${src}/`, dst, '--progress=never']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, dst, { checkSparse: true }), []);
    // DST itself takes SRC's mode and mtime (rsync -a with SRC/).
    const [a, b] = await Promise.all([fsp.stat(src, { bigint: true }), fsp.stat(dst, { bigint: true })]);
    assert.equal(a.mode, b.mode);
    assert.ok(mtimesEqual(a.mtimeNs, b.mtimeNs));
    // No temp files anywhere.
    assert.ok(![...(await snapshotTree(dst, { hash: false })).keys()].some((p) => p.includes('.ferry-')));
  });

  test("uring-sync's form: ferry [options] SRC DST, with --sync and --no-splice", async () => {
    const { base, src } = await fullTree();
    for (const [i, extra] of [[], ['--sync'], ['--no-splice', '-c', '4K'], ['-j', '2', '-q', '8', '-c', '1M']].entries()) {
      const dst = path.join(base, `dst${i}`);
      const r = await runFerry([...extra, `${src}/`, dst, '--progress=never']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await compareTrees(src, dst, { checkSparse: true }), [], extra.join(' '));
    }
  });

  test('trailing slash: SRC/ copies the contents, SRC copies the directory itself', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'tree');
    await makeTree(src, { 'a.txt': 'a', 'sub/b.txt': 'b' });
    const d1 = path.join(base, 'd1');
    const d2 = path.join(base, 'd2');
    assert.equal((await runFerry(['copy', `${src}/`, d1])).code, 0);
    assert.equal((await runFerry(['copy', src, d2])).code, 0);
    assert.deepEqual((await fsp.readdir(d1)).sort(), ['a.txt', 'sub']);
    assert.deepEqual(await fsp.readdir(d2), ['tree']);
    assert.deepEqual(await compareTrees(src, path.join(d2, 'tree')), []);
    // Into an existing DST the same rule holds.
    assert.equal((await runFerry(['copy', src, d1])).code, 0);
    assert.deepEqual((await fsp.readdir(d1)).sort(), ['a.txt', 'sub', 'tree']);
  });

  test('single file: into an existing directory, or to a new name', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'f.txt': { type: 'file', content: 'single', mode: 0o640, mtime: T(1_234_567_890) }, 'dir/': { type: 'dir' } });
    const f = path.join(base, 'f.txt');
    assert.equal((await runFerry(['copy', f, path.join(base, 'dir')])).code, 0);
    assert.equal(await fsp.readFile(path.join(base, 'dir/f.txt'), 'utf8'), 'single');
    assert.equal((await runFerry(['copy', f, path.join(base, 'renamed.txt')])).code, 0);
    assert.equal(await fsp.readFile(path.join(base, 'renamed.txt'), 'utf8'), 'single');
    const st = await fsp.stat(path.join(base, 'renamed.txt'), { bigint: true });
    assert.equal(Number(st.mode & 0o777n), 0o640);
    assert.ok(mtimesEqual(st.mtimeNs, T(1_234_567_890)));
    // Overwriting an existing file of a different size.
    await fsp.writeFile(path.join(base, 'renamed.txt'), 'something much longer than before');
    assert.equal((await runFerry(['copy', f, path.join(base, 'renamed.txt')])).code, 0);
    assert.equal(await fsp.readFile(path.join(base, 'renamed.txt'), 'utf8'), 'single');
    assert.deepEqual((await fsp.readdir(base)).sort(), ['dir', 'f.txt', 'renamed.txt']);
  });
});

describe('ferry copy: incremental', () => {
  test('second run copies nothing; a size change is copied again, an mtime-only change mended in place', async () => {
    const { base, src } = await fullTree();
    const dst = path.join(base, 'dst');
    const j1 = json((await runFerry(['copy', `${src}/`, dst, '--json'])).stdout);
    assert.equal(j1['copied'], 17);
    const j2 = json((await runFerry(['copy', `${src}/`, dst, '--json'])).stdout);
    assert.equal(j2['copied'], 0);
    assert.equal(j2['skipped'], 17);
    assert.equal(j2['exitCode'], 0);
    await fsp.appendFile(path.join(src, 'data/nested/deeper/leaf.txt'), '+');
    await fsp.utimes(path.join(src, 'one.bin'), 1_000_000_000, 1_000_000_000);
    const j3 = json((await runFerry(['copy', `${src}/`, dst, '--json'])).stdout);
    // leaf.txt grew: copied. one.bin has only a new mtime (same bytes): mended in place (issue #14).
    assert.equal(j3['copied'], 1);
    assert.equal(j3['metadataFixed'], 1);
    assert.equal(j3['skipped'], 15);
    assert.deepEqual(await compareTrees(src, dst), []);
  });

  test('--checksum catches a same-size, same-mtime change', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    await makeTree(src, { f: { type: 'file', content: 'AAAA', mtime: T(1_600_000_000) }, g: 'same' });
    assert.equal((await runFerry(['copy', `${src}/`, dst])).code, 0);
    await fsp.writeFile(path.join(dst, 'f'), 'BBBB');
    setTimesPath(path.join(dst, 'f'), T(1_600_000_000)); // the very same mtime, to the nanosecond
    const plain = json((await runFerry(['copy', `${src}/`, dst, '--json'])).stdout);
    assert.equal(plain['copied'], 0);
    assert.equal(await fsp.readFile(path.join(dst, 'f'), 'utf8'), 'BBBB');
    const sum = json((await runFerry(['copy', `${src}/`, dst, '--checksum', '--json'])).stdout);
    assert.equal(sum['copied'], 1);
    assert.equal(sum['skipped'], 1);
    assert.equal(await fsp.readFile(path.join(dst, 'f'), 'utf8'), 'AAAA');
  });
});

describe('ferry copy: --delete and --exclude', () => {
  test('--delete removes what SRC lacks, keeps excluded entries, and never runs without the flag', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    await makeTree(src, { 'keep.txt': 'k', 'sub/keep2.txt': 'k2' });
    await makeTree(dst, { 'old.txt': 'o', 'sub/old2.txt': 'o2', 'olddir/x/y': 'deep', 'notes.log': 'excluded, kept', 'sub/cache/': { type: 'dir' } });
    let r = await runFerry(['copy', `${src}/`, dst, '--json']);
    assert.equal(json(r.stdout)['deleted'], 0);
    assert.ok((await fsp.readdir(dst)).includes('old.txt'));
    r = await runFerry(['copy', `${src}/`, dst, '--delete', '--exclude', '*.log', '--exclude', 'cache/', '--json', '-v']);
    assert.equal(r.code, 0, r.stderr);
    const j = json(r.stdout);
    assert.equal(j['deleted'], 3);
    assert.match(r.stderr, /^deleted old\.txt$/m);
    assert.deepEqual([...(await snapshotTree(dst, { hash: false })).keys()].sort(), ['keep.txt', 'notes.log', 'sub', 'sub/cache', 'sub/keep2.txt']);
  });

  test('--delete with SRC (no slash) only touches DST/<name>', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'tree');
    const dst = path.join(base, 'dst');
    await makeTree(src, { a: 'a' });
    await makeTree(dst, { 'unrelated.txt': 'stays', 'tree/extra': 'goes' });
    assert.equal((await runFerry(['copy', src, dst, '--delete'])).code, 0);
    assert.deepEqual((await fsp.readdir(dst)).sort(), ['tree', 'unrelated.txt']);
    assert.deepEqual(await fsp.readdir(path.join(dst, 'tree')), ['a']);
  });

  test('--exclude: several patterns (basename, anchored, directory-only, **, class)', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    await makeTree(src, {
      'a.tmp': 't', 'sub/b.tmp': 't', 'build/out': 'o', 'src/build/keep': 'k', 'logs/x': 'l', 'logs2': 'file named logs2',
      'deep/1/2/z.bin': 'z', 'deep/keep.txt': 'k', 'file1.txt': '1', 'fileA.txt': 'A', 'keep.me': 'yes', 'x/logs': 'file called logs',
    });
    const r = await runFerry(['copy', `${src}/`, dst, '--exclude', '*.tmp', '--exclude', '/build', '--exclude', 'logs/', '--exclude', 'deep/**/*.bin', '--exclude', 'file[0-9].txt']);
    assert.equal(r.code, 0, r.stderr);
    const got = [...(await snapshotTree(dst, { hash: false })).keys()].sort();
    assert.deepEqual(got, ['deep', 'deep/1', 'deep/1/2', 'deep/keep.txt', 'fileA.txt', 'keep.me', 'logs2', 'src', 'src/build', 'src/build/keep', 'sub', 'x', 'x/logs']);
  });
});

describe('ferry copy: CLI contract', () => {
  test('--json schema: exact keys and types', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, { 'a/b.txt': 'bbb', c: 'cc' });
    const r = await runFerry(['copy', `${src}/`, path.join(base, 'dst'), '--json', '--progress=never']);
    assert.equal(r.code, 0);
    const j = json(r.stdout);
    const types: Record<string, string> = {
      schema: 'number', command: 'string', src: 'string', dst: 'string', dryRun: 'boolean', exitCode: 'number',
      entries: 'number', dirs: 'number', dirsCreated: 'number', copied: 'number', skipped: 'number', metadataFixed: 'number', deleted: 'number',
      failed: 'number', warnings: 'number', bytes: 'number', seconds: 'number', bytesPerSecond: 'number',
      native: 'object', errors: 'array', warningList: 'array',
    };
    assert.deepEqual(Object.keys(j).sort(), Object.keys(types).sort());
    for (const [k, t] of Object.entries(types)) assert.equal(Array.isArray(j[k]) ? 'array' : typeof j[k], t, k);
    assert.equal(j['schema'], 1);
    assert.equal(j['command'], 'copy');
    assert.equal(j['entries'], 3);
    assert.equal(j['copied'], 2);
    assert.equal(j['bytes'], 5);
    assert.equal(j['dirsCreated'], 1);
  });

  test('--json error items carry code, path and message', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    await makeTree(src, { 'd/f': 'x', ok: 'ok' });
    await makeTree(dst, { d: 'a file where SRC has a directory' });
    await fsp.mkdir(path.join(dst, 'ok'));
    await fsp.writeFile(path.join(dst, 'ok', 'x'), 'non-empty dir where SRC has a file');
    const r = await runFerry(['copy', `${src}/`, dst, '--json']);
    assert.equal(r.code, 1);
    const j = json(r.stdout);
    const errors = j['errors'] as Array<Record<string, unknown>>;
    assert.equal(errors.length, 1);
    assert.deepEqual(Object.keys(errors[0]!).sort(), ['code', 'message', 'path']);
    assert.equal(errors[0]!['code'], 'FERRY_E_WRITE');
    assert.equal(errors[0]!['path'], 'ok');
    // The file in place of a directory was replaced, like rsync.
    assert.equal(await fsp.readFile(path.join(dst, 'd/f'), 'utf8'), 'x');
  });

  test('usage errors: exit 2 with one FERRY_E_USAGE line', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'src/a': 'a' });
    const src = path.join(base, 'src');
    const cases = [
      ['copy', '--bogus', src, path.join(base, 'x')],
      ['copy', src],
      ['copy'],
      ['copy', src, path.join(base, 'x'), path.join(base, 'y')],
      ['copy', '-q', '0', src, path.join(base, 'x')],
      ['copy', '-q', 'lots', src, path.join(base, 'x')],
      ['copy', '-c', '12Q', src, path.join(base, 'x')],
      ['copy', '--progress=sometimes', src, path.join(base, 'x')],
      ['copy', '--exclude', '', src, path.join(base, 'x')],
      ['--frobnicate', src, path.join(base, 'x')],
    ];
    for (const args of cases) {
      const r = await runFerry(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^ferry: FERRY_E_USAGE: /);
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(await fsp.readdir(base), ['src']);
  });

  test('missing SRC and DST inside SRC: exit 2, nothing written', async () => {
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, { 'a/b': 'b' });
    let r = await runFerry(['copy', path.join(base, 'nope'), path.join(base, 'dst')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^ferry: FERRY_E_SRC_MISSING: .*nope/);
    for (const [s, d] of [[src, path.join(src, 'inside')], [`${src}/`, path.join(src, 'a/deeper')], [`${src}/`, src], [src, base]]) {
      r = await runFerry(['copy', s!, d!]);
      assert.equal(r.code, 2, `${s} -> ${d}: ${r.stderr}`);
      assert.match(r.stderr, /^ferry: FERRY_E_DST_IN_SRC: /);
    }
    assert.deepEqual([...(await snapshotTree(base, { hash: false })).keys()].sort(), ['src', 'src/a', 'src/a/b']);
  });

  test('--help, --version, --dry-run, -v and --progress=never output', async () => {
    const h = await runFerry(['copy', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--queue-depth/);
    assert.match(h.stdout, /--no-splice/);
    const v = await runFerry(['copy', '--version']);
    assert.match(v.stdout, /^ferry \d+\.\d+\.\d+/);
    const base = await tmpDir();
    const src = path.join(base, 'src');
    await makeTree(src, { a: 'a', 'b/c': 'c' });
    const dry = await runFerry(['copy', `${src}/`, path.join(base, 'dst'), '-n', '-v', '--progress=never']);
    assert.equal(dry.code, 0);
    assert.match(dry.stderr, /^would copy a$/m);
    assert.match(dry.stderr, /^would copy b\/c$/m);
    await assert.rejects(fsp.access(path.join(base, 'dst')));
    const quiet = await runFerry(['copy', `${src}/`, path.join(base, 'dst'), '--progress=never']);
    const lines = quiet.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^copied 2 \(2 B\), skipped 0, deleted 0, failed 0 in \d+\.\d\d s \(.*\/s\)$/);
  });
});
