// One test per known attack on a file receiver (node-tar's test/ghsa-* habit).
// The lexical gate is fs/path-safety; the filesystem half is fs/safe-writer.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, FerryError, cleanForDisplay } from '../src/core/errors.js';
import type { Entry } from '../src/core/entry.js';
import { validateHardlinkTarget, validateLinkTarget, validateRelativePath } from '../src/fs/path-safety.js';
import { SafeWriter } from '../src/fs/safe-writer.js';
import { cleanupTmpDirs, makeTree, tmpDir } from './support/tree.js';

after(cleanupTmpDirs);

const isPathError = (e: unknown): boolean => e instanceof FerryError && e.code === ErrorCodes.PATH;

function fileEntry(p: string, content = 'x'): Entry {
  return { path: p, kind: 'file', size: content.length, mode: 0o644, mtimeNs: 1_600_000_000_000_000_000n };
}

async function writeFile(w: SafeWriter, p: string, content = 'x'): Promise<void> {
  const t = await w.beginFile(fileEntry(p, content));
  try {
    await t.write(Buffer.from(content), 0);
    await t.commit();
  } catch (e) {
    await t.abort();
    throw e;
  }
}

describe('path safety: lexical', () => {
  test('GHSA-style: ../ traversal', () => {
    for (const p of ['..', '../etc/passwd', 'a/../../etc/passwd', 'a/..', 'a/b/../../..']) {
      assert.throws(() => validateRelativePath(p), isPathError, p);
    }
  });
  test('absolute path', () => {
    for (const p of ['/etc/passwd', '/', '//x']) assert.throws(() => validateRelativePath(p), isPathError, p);
  });
  test('empty and dot components', () => {
    for (const p of ['', '.', './a', 'a/./b', 'a//b', 'a/', 'a/.']) assert.throws(() => validateRelativePath(p), isPathError, JSON.stringify(p));
  });
  test('NUL byte', () => {
    assert.throws(() => validateRelativePath('a\0/etc/passwd'), isPathError);
    assert.throws(() => validateLinkTarget('x\0y', 'l'), isPathError);
  });
  test('very long name', () => {
    assert.throws(() => validateRelativePath('a/' + 'n'.repeat(256)), isPathError);
    assert.equal(validateRelativePath('a/' + 'n'.repeat(255)), 'a/' + 'n'.repeat(255));
    // 255 bytes of UTF-8 is the limit, not 255 characters.
    assert.throws(() => validateRelativePath('é'.repeat(128)), isPathError);
  });
  test('very long path', () => {
    const p = Array.from({ length: 20 }, () => 'x'.repeat(250)).join('/');
    assert.throws(() => validateRelativePath(p), isPathError);
  });
  test('deep nesting', () => {
    assert.throws(() => validateRelativePath(Array(257).fill('d').join('/')), isPathError);
    assert.doesNotThrow(() => validateRelativePath(Array(256).fill('d').join('/')));
  });
  test('lone surrogate (not representable as a file name)', () => {
    assert.throws(() => validateRelativePath('a\ud800b'), isPathError);
  });
  test('hard link target outside tree', () => {
    for (const t of ['../outside', '/etc/shadow', 'a/../../x', '']) assert.throws(() => validateHardlinkTarget(t, 'h'), isPathError, t);
    assert.equal(validateHardlinkTarget('a/b', 'h'), 'a/b');
  });
  test('symlink target is kept verbatim but capped', () => {
    assert.equal(validateLinkTarget('../../etc/passwd', 'l'), '../../etc/passwd');
    assert.throws(() => validateLinkTarget('x'.repeat(4097), 'l'), isPathError);
    assert.throws(() => validateLinkTarget('', 'l'), isPathError);
  });
  test('control characters are legal in names but cleaned for display', () => {
    assert.equal(validateRelativePath('a\x1b[2Jb'), 'a\x1b[2Jb');
    try {
      validateRelativePath('/\x1b[31mred');
      assert.fail('should throw');
    } catch (e) {
      assert.ok(isPathError(e));
      assert.ok(!(e as FerryError).toLine().includes('\x1b'));
    }
    assert.equal(cleanForDisplay('a\nb'), 'a\\x0ab');
  });
  test('backslash is an ordinary character on Linux', () => {
    assert.equal(validateRelativePath('a\\b'), 'a\\b');
  });
});

describe('path safety: the writer never leaves DST', () => {
  test('symlink parent then file through it (existing symlink in DST)', async () => {
    const base = await tmpDir();
    const outside = path.join(base, 'outside');
    const dst = path.join(base, 'dst');
    await makeTree(base, { 'outside/keep': 'original', 'dst/': { type: 'dir' } });
    await fsp.symlink(outside, path.join(dst, 'a'));
    const w = await SafeWriter.open(dst);
    // A file through the symlinked parent is refused ...
    await assert.rejects(writeFile(w, 'a/keep', 'pwned'), isPathError);
    await assert.rejects(writeFile(w, 'a/new', 'pwned'), isPathError);
    assert.equal(await fsp.readFile(path.join(outside, 'keep'), 'utf8'), 'original');
    await assert.rejects(fsp.access(path.join(outside, 'new')));
    // ... and a directory entry of that name replaces the link, it does not follow it.
    await w.mkdir({ path: 'a', kind: 'dir', size: 0, mode: 0o755, mtimeNs: 0n });
    await writeFile(w, 'a/keep', 'new content');
    await w.finish();
    assert.ok((await fsp.lstat(path.join(dst, 'a'))).isDirectory());
    assert.equal(await fsp.readFile(path.join(outside, 'keep'), 'utf8'), 'original');
    assert.equal(await fsp.readFile(path.join(dst, 'a/keep'), 'utf8'), 'new content');
  });

  test('symlink at the final name is replaced, not written through', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'outside/target': 'original', 'dst/': { type: 'dir' } });
    await fsp.symlink(path.join(base, 'outside/target'), path.join(base, 'dst/f'));
    const w = await SafeWriter.open(path.join(base, 'dst'));
    await writeFile(w, 'f', 'new');
    assert.equal(await fsp.readFile(path.join(base, 'outside/target'), 'utf8'), 'original');
    assert.ok((await fsp.lstat(path.join(base, 'dst/f'))).isFile());
  });

  test('symlink then file through it in the same transfer', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'outside/': { type: 'dir' }, 'dst/': { type: 'dir' } });
    const w = await SafeWriter.open(path.join(base, 'dst'));
    w.symlink({ path: 'a', kind: 'symlink', size: 0, mode: 0o777, mtimeNs: 0n, target: path.join(base, 'outside') });
    // Symlinks are created last, so this write cannot go through the link.
    await writeFile(w, 'a/x', 'data');
    const errs = await w.finish();
    assert.deepEqual(await fsp.readdir(path.join(base, 'outside')), []);
    // The link could not replace the directory: reported, not followed.
    assert.equal(errs.length, 1);
  });

  test('hard link target outside tree (writer)', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'secret': 'top secret', 'dst/': { type: 'dir' } });
    const w = await SafeWriter.open(path.join(base, 'dst'));
    await assert.rejects(w.hardlink({ path: 'h', kind: 'hardlink', size: 0, mode: 0o644, mtimeNs: 0n, target: '../secret' }), isPathError);
    await assert.rejects(fsp.lstat(path.join(base, 'dst/h')));
  });

  test('hard link to a symlink in DST is refused', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'secret': 'top secret', 'dst/': { type: 'dir' } });
    await fsp.symlink(path.join(base, 'secret'), path.join(base, 'dst/l'));
    const w = await SafeWriter.open(path.join(base, 'dst'));
    await assert.rejects(w.hardlink({ path: 'h', kind: 'hardlink', size: 0, mode: 0o644, mtimeNs: 0n, target: 'l' }), isPathError);
  });

  test('GHSA-style: ../ traversal through the writer', async () => {
    const base = await tmpDir();
    await makeTree(base, { 'dst/': { type: 'dir' } });
    const w = await SafeWriter.open(path.join(base, 'dst'));
    await assert.rejects(w.beginFile(fileEntry('../escaped')), isPathError);
    await assert.rejects(w.mkdir({ path: '../escaped-dir', kind: 'dir', size: 0, mode: 0o755, mtimeNs: 0n }), isPathError);
    await assert.rejects(w.remove('../dst'), isPathError);
    assert.deepEqual((await fsp.readdir(base)).sort(), ['dst']);
  });

  test('setuid/setgid/sticky bits are stripped unless asked', async () => {
    const base = await tmpDir();
    const w = await SafeWriter.open(path.join(base, 'dst'));
    const t = await w.beginFile({ ...fileEntry('suid'), mode: 0o4755 });
    await t.write(Buffer.from('x'), 0);
    await t.commit();
    assert.equal((await fsp.stat(path.join(base, 'dst/suid'))).mode & 0o7777, 0o755);
    const w2 = await SafeWriter.open(path.join(base, 'dst2'), { preserveSpecialBits: true });
    const t2 = await w2.beginFile({ ...fileEntry('suid'), mode: 0o4755 });
    await t2.write(Buffer.from('x'), 0);
    await t2.commit();
    assert.equal((await fsp.stat(path.join(base, 'dst2/suid'))).mode & 0o7777, 0o4755);
  });
});
