/**
 * rsync's option spellings for `ferry copy` (issue #14, "Missing options people type
 * every day"): each option is checked for what it does, not only that it is accepted.
 * On a ferry without them every command here is a usage error (unknown option).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, promises as fsp, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { newCounters, runCopy } from '../src/modes/copy.js';
import { compileFilters } from '../src/fs/exclude.js';
import { parseFilesFrom } from '../src/fs/files-from.js';
import { keepExisting, NO_POLICY } from '../src/transfer/update-policy.js';
import { cleanupTmpDirs, compareTrees, makeTree, runFerry, smallTmpfs, tmpDir, type TreeSpec } from './support/tree.js';

after(cleanupTmpDirs);

const OLD = 1_500_000_000_000_000_000n;
const MID = 1_600_000_000_000_000_000n;
const NEW = 1_700_000_000_000_000_000n;

async function setup(spec: TreeSpec, dstSpec?: TreeSpec): Promise<{ src: string; dst: string; base: string }> {
  const base = await tmpDir('ferry-rsopt-');
  const src = path.join(base, 'src');
  const dst = path.join(base, 'dst');
  await makeTree(src, spec);
  if (dstSpec) await makeTree(dst, dstSpec);
  return { src, dst, base };
}

const read = (p: string): Promise<string> => fsp.readFile(p, 'utf8');
const exists = (p: string): Promise<boolean> => fsp.lstat(p).then(() => true, () => false);

describe('update policy (pure)', () => {
  const file = { kind: 'file' as const, size: 5, mtimeNs: MID };
  test('keeps only what each option says, never a directory, never a missing entry', () => {
    assert.equal(keepExisting(NO_POLICY, file, { kind: 'file', size: 5, mtimeNs: OLD }), null);
    assert.equal(keepExisting({ ...NO_POLICY, sizeOnly: true }, file, { kind: 'file', size: 5, mtimeNs: OLD }), 'same-size');
    assert.equal(keepExisting({ ...NO_POLICY, sizeOnly: true }, file, { kind: 'file', size: 6, mtimeNs: MID }), null);
    assert.equal(keepExisting({ ...NO_POLICY, update: true }, file, { kind: 'file', size: 9, mtimeNs: NEW }), 'newer');
    assert.equal(keepExisting({ ...NO_POLICY, update: true }, file, { kind: 'file', size: 9, mtimeNs: MID }), null, 'equal mtimes fall back to the check');
    assert.equal(keepExisting({ ...NO_POLICY, update: true }, file, { kind: 'symlink', size: 9, mtimeNs: NEW }), null, 'a change of kind is always transferred');
    assert.equal(keepExisting({ ...NO_POLICY, ignoreExisting: true }, file, { kind: 'symlink', size: 1, mtimeNs: OLD }), 'ignore-existing');
    assert.equal(keepExisting({ ...NO_POLICY, ignoreExisting: true }, file, null), null);
    assert.equal(keepExisting({ ...NO_POLICY, ignoreExisting: true }, { kind: 'dir', size: 0, mtimeNs: MID }, { kind: 'dir', size: 0, mtimeNs: MID }), null);
  });
});

describe('filters and lists (pure)', () => {
  test('--include/--exclude: the first matching rule wins, in command-line order', () => {
    const keepTxt = compileFilters([
      { include: true, pattern: '*.txt' },
      { include: false, pattern: '*' },
    ]);
    assert.equal(keepTxt('a.txt', false), false);
    assert.equal(keepTxt('a.log', false), true);
    const reversed = compileFilters([
      { include: false, pattern: '*' },
      { include: true, pattern: '*.txt' },
    ]);
    assert.equal(reversed('a.txt', false), true);
  });
  test('--files-from: comments skipped, ./ and leading / dropped, .. refused', () => {
    assert.deepEqual(parseFilesFrom('# c\n; c\n\n./a/b\n/c\r\nd/\n', 'l'), ['a/b', 'c', 'd']);
    assert.throws(() => parseFilesFrom('a/../../etc\n', 'l'), /line 1: .*'\.\.'/);
  });
});

describe('ferry copy with rsync options', () => {
  test('-a and -r are accepted (what ferry does anyway) and copy the whole tree', async () => {
    const { src, dst } = await setup({ 'a/b.txt': 'b', 'c': 'c', 'l': { type: 'symlink', target: 'c' } });
    const r = await runFerry(['copy', '-a', '-r', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await compareTrees(src, dst), []);
    const r2 = await runFerry(['copy', '-ar', '--progress=never', `${src}/`, path.join(dst, 'again')]);
    assert.equal(r2.code, 0, r2.stderr);
  });

  test('-v lists what is copied; -vv also what is up to date', async () => {
    const { src, dst } = await setup({ 'a.txt': 'a', 'b.txt': 'b' });
    const r = await runFerry(['copy', '-v', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /copied a\.txt/);
    await fsp.writeFile(path.join(src, 'b.txt'), 'bb');
    const r2 = await runFerry(['copy', '-vv', '--progress=never', `${src}/`, dst]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /^a\.txt is uptodate$/m);
    assert.match(r2.stderr, /copied b\.txt/);
    assert.doesNotMatch(r2.stderr, /b\.txt is uptodate/);
  });

  test('--stats prints rsync\'s summary block on stdout', async () => {
    const { src, dst } = await setup({ 'a.txt': 'hello', 'd/b.txt': 'abc', 'l': { type: 'symlink', target: 'a.txt' } });
    const r = await runFerry(['copy', '--stats', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Number of files: 4 \(reg: 2, dir: 1, link: 1\)$/m);
    assert.match(r.stdout, /^Number of regular files transferred: 2$/m);
    assert.match(r.stdout, /^Total file size: 8 bytes$/m);
    assert.match(r.stdout, /^Total transferred file size: 8 bytes$/m);
    assert.match(r.stdout, /^total size is 8 {2}speedup is /m);
    const again = await runFerry(['copy', '--stats', '--progress=never', `${src}/`, dst]);
    assert.match(again.stdout, /^Number of regular files transferred: 0$/m);
    assert.match(again.stdout, /^Total transferred file size: 0 bytes$/m);
    const both = await runFerry(['copy', '--stats', '--json', `${src}/`, dst]);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--stats and --json both write to standard output/);
  });

  test('--size-only: a same-size file is left alone whatever its mtime; another size is copied', async () => {
    const { src, dst } = await setup(
      { 'same.txt': { type: 'file', content: 'NEW!', mtime: NEW }, 'grew.txt': { type: 'file', content: 'longer', mtime: NEW } },
      { 'same.txt': { type: 'file', content: 'old.', mtime: OLD }, 'grew.txt': { type: 'file', content: 'old', mtime: OLD } },
    );
    const r = await runFerry(['copy', '--size-only', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await read(path.join(dst, 'same.txt')), 'old.');
    assert.equal(await read(path.join(dst, 'grew.txt')), 'longer');
    const plain = await runFerry(['copy', '--progress=never', `${src}/`, dst]);
    assert.equal(plain.code, 0);
    assert.equal(await read(path.join(dst, 'same.txt')), 'NEW!', 'without it the mtime difference copies');
    const both = await runFerry(['copy', '--size-only', '--checksum', `${src}/`, dst]);
    assert.equal(both.code, 2);
  });

  test('--ignore-existing: what DST has stays (files and symlinks), new entries arrive', async () => {
    const { src, dst } = await setup(
      { 'a.txt': 'source a', 'new.txt': 'new', 'sub/x': 'x', 'l': { type: 'symlink', target: 'a.txt' } },
      { 'a.txt': 'dst a', 'sub/': { type: 'dir' }, 'l': { type: 'symlink', target: 'elsewhere' } },
    );
    const r = await runFerry(['copy', '--ignore-existing', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await read(path.join(dst, 'a.txt')), 'dst a');
    assert.equal(await fsp.readlink(path.join(dst, 'l')), 'elsewhere');
    assert.equal(await read(path.join(dst, 'new.txt')), 'new');
    assert.equal(await read(path.join(dst, 'sub/x')), 'x', 'an existing directory is still entered');
  });

  test('-u/--update: a file newer in DST is kept, an older one replaced', async () => {
    const { src, dst } = await setup(
      { 'newer-in-dst': { type: 'file', content: 'src', mtime: MID }, 'older-in-dst': { type: 'file', content: 'src', mtime: MID } },
      { 'newer-in-dst': { type: 'file', content: 'dst copy', mtime: NEW }, 'older-in-dst': { type: 'file', content: 'dst copy', mtime: OLD } },
    );
    for (const flag of ['-u', '--update']) {
      const r = await runFerry(['copy', flag, '--progress=never', `${src}/`, dst]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await read(path.join(dst, 'newer-in-dst')), 'dst copy', flag);
      assert.equal(await read(path.join(dst, 'older-in-dst')), 'src', flag);
    }
  });

  test('--include before --exclude keeps the included; rsync\'s "*/ then *.txt then *" idiom', async () => {
    const spec: TreeSpec = { 'a.txt': 'a', 'b.log': 'b', 'd/c.txt': 'c', 'd/e.log': 'e' };
    const { src, base } = await setup(spec);
    const d1 = path.join(base, 'd1');
    const r = await runFerry(['copy', '--include=*/', '--include', '*.txt', '--exclude=*', '--progress=never', `${src}/`, d1]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await exists(path.join(d1, 'a.txt')));
    assert.ok(await exists(path.join(d1, 'd/c.txt')));
    assert.ok(!(await exists(path.join(d1, 'b.log'))));
    assert.ok(!(await exists(path.join(d1, 'd/e.log'))));
    // The other order: the exclude matches first and wins.
    const d2 = path.join(base, 'd2');
    const r2 = await runFerry(['copy', '--exclude=*.txt', '--include=a.txt', '--progress=never', `${src}/`, d2]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.ok(!(await exists(path.join(d2, 'a.txt'))));
    assert.ok(await exists(path.join(d2, 'b.log')));
  });

  test('--exclude-from / --include-from read rules from files, in place among the others', async () => {
    const { src, base } = await setup({ 'keep.bin': 'k', 'drop.bin': 'd', 'x.tmp': 't', 'y.txt': 'y' });
    await fsp.writeFile(path.join(base, 'inc'), '# rules\nkeep.bin\n');
    await fsp.writeFile(path.join(base, 'exc'), '; rsync comment\n*.bin\r\n*.tmp\n\n');
    const d = path.join(base, 'd');
    const r = await runFerry(['copy', `--include-from=${path.join(base, 'inc')}`, `--exclude-from=${path.join(base, 'exc')}`, '--progress=never', `${src}/`, d]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await fsp.readdir(d)).sort(), ['keep.bin', 'y.txt']);
    const missing = await runFerry(['copy', `--exclude-from=${path.join(base, 'nope')}`, `${src}/`, d]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--exclude-from .*nope: cannot read: ENOENT/);
  });

  test('--files-from: only the listed paths, under their parents; -r descends; .. is refused; - is stdin', async () => {
    const { src, base } = await setup({ 'a/b/c.txt': 'c', 'a/b/other': 'o', 'top': 't', 'dir/x': 'x', 'dir/sub/y': 'y' });
    const list = path.join(base, 'list');
    await fsp.writeFile(list, 'a/b/c.txt\ndir\n');
    const d1 = path.join(base, 'd1');
    const r = await runFerry(['copy', `--files-from=${list}`, '--progress=never', src, d1]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await read(path.join(d1, 'a/b/c.txt')), 'c');
    assert.ok(!(await exists(path.join(d1, 'a/b/other'))));
    assert.ok(!(await exists(path.join(d1, 'top'))));
    assert.deepEqual(await fsp.readdir(path.join(d1, 'dir')), [], 'a listed directory without -r is copied empty (rsync)');
    const d2 = path.join(base, 'd2');
    const r2 = await runFerry(['copy', '-r', `--files-from=${list}`, '--progress=never', `${src}/`, d2]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(await read(path.join(d2, 'dir/sub/y')), 'y');
    await fsp.writeFile(list, 'top\n../escape\n');
    const bad = await runFerry(['copy', `--files-from=${list}`, src, path.join(base, 'd3')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /line 2: "\.\.\/escape" has a '\.\.' component/);
    assert.ok(!(await exists(path.join(base, 'd3'))), 'nothing written');
    const viaStdin = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      void import('node:child_process').then(({ spawn }) => {
        const c = spawn(process.execPath, [path.resolve('dist/src/cli/main.js'), 'copy', '--files-from=-', '--progress=never', src, path.join(base, 'd4')], { stdio: ['pipe', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        c.stdin.end('top\n');
        c.on('close', (code) => resolve({ code, stderr }));
      });
    });
    assert.equal(viaStdin.code, 0, viaStdin.stderr);
    assert.deepEqual(await fsp.readdir(path.join(base, 'd4')), ['top']);
  });

  test('--files-from: a parent that is a symlink in SRC is not followed', async () => {
    const { src, base } = await setup({ 'real/f': 'f', 'via': { type: 'symlink', target: 'real' } });
    const list = path.join(base, 'list');
    await fsp.writeFile(list, 'via/f\n');
    const r = await runFerry(['copy', `--files-from=${list}`, '--progress=never', `${src}/`, path.join(base, 'd')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /via\/f: not copied: via is not a directory in the source/);
  });

  test('--remove-source-files: sources of copied and up-to-date files go, directories stay; dry run removes nothing', async () => {
    const { src, dst, base } = await setup({ 'a.txt': 'a', 'd/b.txt': 'b', 'l': { type: 'symlink', target: 'a.txt' }, 'up': 'same' }, {});
    const c0 = await runFerry(['copy', '--progress=never', path.join(src, 'up'), path.join(dst, 'up')]);
    assert.equal(c0.code, 0, c0.stderr);
    const dry = await runFerry(['copy', '-n', '--remove-source-files', '--progress=never', `${src}/`, dst]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(await exists(path.join(src, 'a.txt')));
    const r = await runFerry(['copy', '--remove-source-files', '--json', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await read(path.join(dst, 'd/b.txt')), 'b');
    assert.equal(await fsp.readlink(path.join(dst, 'l')), 'a.txt');
    assert.deepEqual(await fsp.readdir(src), ['d']);
    assert.deepEqual(await fsp.readdir(path.join(src, 'd')), []);
    assert.equal(JSON.parse(r.stdout.trim().split('\n').at(-1)!)['sourcesRemoved'], 4);
    void base;
  });

  test('--remove-source-files keeps a source that changed after it was copied', async () => {
    const { src, dst } = await setup({ 'a.txt': 'a', 'b.txt': 'b' });
    const warnings: string[] = [];
    const r = await runCopy(
      {
        src: `${src}/`,
        dst,
        removeSourceFiles: true,
        onEvent: (ev) => {
          if (ev.type === 'copied' && ev.path === 'a.txt') appendFileSync(path.join(src, 'a.txt'), 'more');
          if (ev.type === 'warning') warnings.push(ev.error.toLine());
        },
      },
      newCounters(),
    );
    assert.equal(r.counters.sourcesRemoved, 1);
    assert.equal(await read(path.join(src, 'a.txt')), 'amore', 'kept');
    assert.ok(!(await exists(path.join(src, 'b.txt'))));
    assert.match(warnings.join('\n'), /FERRY_E_CHANGED.*a\.txt: source kept/);
  });

  test('-L/--copy-links: links become what they point to; a dangling one fails naming it', async () => {
    const { src, base } = await setup({ 'data.txt': 'payload', 'dir/in': 'i', 'l': { type: 'symlink', target: 'data.txt' }, 'ld': { type: 'symlink', target: 'dir' } });
    const d = path.join(base, 'd');
    const r = await runFerry(['copy', '-L', '--progress=never', `${src}/`, d]);
    assert.equal(r.code, 0, r.stderr);
    const st = await fsp.lstat(path.join(d, 'l'));
    assert.ok(st.isFile());
    assert.equal(await read(path.join(d, 'l')), 'payload');
    assert.ok((await fsp.lstat(path.join(d, 'ld'))).isDirectory());
    assert.equal(await read(path.join(d, 'ld/in')), 'i');
    await fsp.symlink('missing-target', path.join(src, 'dangling'));
    const r2 = await runFerry(['copy', '--copy-links', '--progress=never', `${src}/`, path.join(base, 'd2')]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /FERRY_E_READ: dangling: symlink points to nothing/);
    await fsp.rm(path.join(src, 'dangling'));
    await fsp.symlink('..', path.join(src, 'dir/loop'));
    const r3 = await runFerry(['copy', '-L', '--progress=never', `${src}/`, path.join(base, 'd3')]);
    assert.equal(r3.code, 1, 'a loop is reported, not followed forever');
    assert.match(r3.stderr, /symlink loop/);
    const both = await runFerry(['copy', '-L', '--remove-source-files', `${src}/`, path.join(base, 'd4')]);
    assert.equal(both.code, 2);
  });

  test('-x/--one-file-system: a mount point is copied empty, not entered', async (t) => {
    const { src, base } = await setup({ 'a': 'a' });
    const m = await smallTmpfs(t, src, '1m');
    if (!m) return;
    try {
      await fsp.writeFile(path.join(m.dir, 'inside'), 'other fs');
      const d = path.join(base, 'd');
      const r = await runFerry(['copy', '-x', '--progress=never', `${src}/`, d]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await fsp.lstat(path.join(d, 'mnt'))).isDirectory());
      assert.deepEqual(await fsp.readdir(path.join(d, 'mnt')), []);
      const d2 = path.join(base, 'd2');
      const r2 = await runFerry(['copy', '--progress=never', `${src}/`, d2]);
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(await read(path.join(d2, 'mnt/inside')), 'other fs', 'without -x it is entered');
    } finally {
      m.unmount();
    }
  });

  test('--link-dest: unchanged files are hard links into the previous snapshot, changed ones are copies', async () => {
    const { src, base } = await setup({ 'same.bin': Buffer.alloc(10_000, 1), 'd/same.txt': 'same', 'changes.txt': 'v1' });
    const snap1 = path.join(base, 'snap1');
    const r1 = await runFerry(['copy', '--progress=never', `${src}/`, snap1]);
    assert.equal(r1.code, 0, r1.stderr);
    await fsp.writeFile(path.join(src, 'changes.txt'), 'v2 longer');
    const snap2 = path.join(base, 'snap2');
    // A relative DIR is relative to DST (rsync); a missing one is simply not used.
    const r2 = await runFerry(['copy', '-v', '--link-dest=../nowhere', '--link-dest=../snap1', '--progress=never', `${src}/`, snap2]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stderr, /linked same\.bin \(--link-dest\)/);
    const ino = async (p: string): Promise<number> => (await fsp.stat(p)).ino;
    assert.equal(await ino(path.join(snap2, 'same.bin')), await ino(path.join(snap1, 'same.bin')));
    assert.equal(await ino(path.join(snap2, 'd/same.txt')), await ino(path.join(snap1, 'd/same.txt')));
    assert.notEqual(await ino(path.join(snap2, 'changes.txt')), await ino(path.join(snap1, 'changes.txt')));
    assert.equal(await read(path.join(snap2, 'changes.txt')), 'v2 longer');
    assert.equal(await read(path.join(snap1, 'changes.txt')), 'v1', 'the old snapshot is untouched');
    assert.deepEqual(await compareTrees(src, snap2), []);
    // A symlink in DIR where the file was is never linked through.
    await fsp.rm(path.join(snap1, 'same.bin'));
    await fsp.symlink(path.join(src, 'same.bin'), path.join(snap1, 'same.bin'));
    const snap3 = path.join(base, 'snap3');
    const r3 = await runFerry(['copy', `--link-dest=${snap1}`, '--progress=never', `${src}/`, snap3]);
    assert.equal(r3.code, 0, r3.stderr);
    assert.ok((await fsp.lstat(path.join(snap3, 'same.bin'))).isFile());
    assert.notEqual(await ino(path.join(snap3, 'same.bin')), await ino(path.join(src, 'same.bin')));
  });

  test('--inplace rewrites an existing file under its own name (its hard links see it), never through a symlink', async () => {
    const { src, dst, base } = await setup(
      { 'a': 'new content', 'victim-link': 'replaced safely', 'fresh': 'f' },
      { 'a': 'old', 'a2': { type: 'hardlink', target: 'a' } },
    );
    const victim = path.join(base, 'victim');
    await fsp.writeFile(victim, 'must stay');
    await fsp.symlink(victim, path.join(dst, 'victim-link'));
    const before = (await fsp.stat(path.join(dst, 'a'))).ino;
    const r = await runFerry(['copy', '--inplace', '--progress=never', `${src}/`, dst]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await fsp.stat(path.join(dst, 'a'))).ino, before, 'same inode');
    assert.equal(await read(path.join(dst, 'a2')), 'new content', 'the other hard link sees the new content');
    assert.equal(await read(victim), 'must stay');
    assert.ok((await fsp.lstat(path.join(dst, 'victim-link'))).isFile());
    assert.equal(await read(path.join(dst, 'fresh')), 'f');
    assert.deepEqual(await compareTrees(src, dst, { ignore: (rel) => rel === 'a2' }), []);
    // Without it, the file is replaced by a new inode (atomic publish).
    await fsp.writeFile(path.join(src, 'a'), 'third version');
    const r2 = await runFerry(['copy', '--progress=never', `${src}/`, dst]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.notEqual((await fsp.stat(path.join(dst, 'a'))).ino, before);
  });

  test('--partial-dir: temp files live in DIR inside the target directory, which is removed afterwards; never a symlink', async () => {
    const { src, dst, base } = await setup({ 'sub/a.bin': Buffer.alloc(50_000, 9), 'b': 'b' });
    const temps: string[] = [];
    const r = await runCopy(
      // tempPath names the temp file through its directory's descriptor (/proc/self/fd/N/name,
      // fs/dir-handles): read where that directory is while the hook runs.
      { src: `${src}/`, dst, partialDir: '.part', hooks: { afterData: (_e, tempPath) => void temps.push(path.join(readlinkSync(path.dirname(tempPath)), path.basename(tempPath))) } },
      newCounters(),
    );
    assert.equal(r.counters.failed, 0, r.errors.map((e) => e.toLine()).join('\n'));
    assert.deepEqual(temps.map((t) => path.relative(realpathSync(dst), path.dirname(t))).sort(), ['.part', 'sub/.part']);
    assert.ok(!(await exists(path.join(dst, '.part'))) && !(await exists(path.join(dst, 'sub/.part'))), 'removed once empty');
    assert.deepEqual(await compareTrees(src, dst), []);
    // A symlink named DIR in DST is never written through.
    const outside = path.join(base, 'outside');
    await fsp.mkdir(outside);
    const d2 = path.join(base, 'd2');
    await fsp.mkdir(d2);
    await fsp.symlink(outside, path.join(d2, '.part'));
    const r2 = await runFerry(['copy', '--partial-dir=.part', '--progress=never', `${src}/`, d2]);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /FERRY_E_PATH: \.part: is a symlink in the destination/);
    assert.deepEqual(await fsp.readdir(outside), []);
    for (const bad of ['../x', '/abs', 'a/b', '']) {
      const r3 = await runFerry(['copy', `--partial-dir=${bad}`, `${src}/`, path.join(base, 'd3')]);
      assert.equal(r3.code, 2, bad);
      assert.match(r3.stderr, /--partial-dir takes one plain directory name/);
    }
    const both = await runFerry(['copy', '--partial-dir=p', '--inplace', `${src}/`, path.join(base, 'd3')]);
    assert.equal(both.code, 2);
  });

  test('options that mean nothing locally are refused with the reason', async () => {
    const { src, base } = await setup({ 'a': 'a' });
    const r = await runFerry(['copy', '--bwlimit=100', `${src}/`, path.join(base, 'd')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--bwlimit applies to network transfers/);
  });
});
